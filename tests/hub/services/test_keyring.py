"""The forum secret's sealed distribution on SQLite and PostgreSQL: key registration and
approval (a new registration waits beside the keys in use, which retire when it is approved),
recipients (active members with approved keys only), uploads refused whole unless they cover
exactly the recipients with envelopes whose headers agree, pickups recorded and audited once,
and rotation requests satisfied by the next rotation.

Envelopes are genuine (:func:`sigshare.keyring.seal_envelope`), and the ones members fetch are
opened with the members' keys.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text

from sigshare.hub.domain import KeyState, Role
from sigshare.hub.errors import (
    AlreadyExistsError,
    HubError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    PreconditionError,
)
from sigshare.hub.services import keyring, parameters, principals
from sigshare.hub.services.keyring import EnvelopeUpload
from sigshare.hub.storage import session_scope
from sigshare.hub.storage.audit import AuditRepository
from sigshare.hub.storage.principals import PrincipalRepository
from sigshare.keyring import (
    MAX_ENVELOPE_BYTES,
    open_envelope,
    registration_proof,
    signing_fingerprint,
)
from tests.support.hub_keys import (
    SETUP_ACTOR,
    add_principals,
    approve,
    keys_of,
    register,
    register_and_approve,
    sealed,
    secret_of,
)

T0 = datetime(2026, 5, 4, 9, 30, tzinfo=UTC)
KEEPER = "keeper"
MEMBERS = ("m1", "m2", "m3")
ROLES = {KEEPER: Role.CUSTODIAN, "coord": Role.COORDINATOR, **dict.fromkeys(MEMBERS, Role.MEMBER)}
KEY_ID = "epoch-2"


@pytest.fixture
def forum(engine: Engine) -> Engine:
    """The custodian, a coordinator and members m1-m3, no keys registered."""
    add_principals(engine, ROLES, T0)
    return engine


def _principal(engine: Engine, name: str) -> Any:
    with session_scope(engine) as session:
        return PrincipalRepository(session).get_by_name(name)


def _audited(engine: Engine, action: str) -> list[tuple[str, str, dict[str, Any]]]:
    """``(actor, target, details)`` of every ``action`` entry, oldest first."""
    with session_scope(engine) as session:
        entries = AuditRepository(session).search(action=action, limit=1000)
    return [(e.actor, e.target, e.details) for e in reversed(entries)]


def _stored(engine: Engine) -> tuple[int, int]:
    """How many rotations and envelopes the database holds."""
    with engine.connect() as connection:
        rotations = connection.execute(text("SELECT count(*) FROM key_rotations")).scalar_one()
        envelopes = connection.execute(text("SELECT count(*) FROM key_envelopes")).scalar_one()
    return rotations, envelopes


def _recipients(engine: Engine, now: datetime = T0) -> keyring.RecipientList:
    with session_scope(engine) as session:
        return keyring.list_recipients(session, now=now)


def _upload(
    engine: Engine,
    envelopes: list[EnvelopeUpload],
    *,
    key_id: str = KEY_ID,
    activate_at: datetime | None = None,
    now: datetime = T0,
) -> Any:
    with session_scope(engine) as session:
        return keyring.upload_envelopes(
            session,
            custodian=_principal(engine, KEEPER),
            key_id=key_id,
            activate_at=activate_at,
            envelopes=envelopes,
            now=now,
        )


def _fetch(engine: Engine, name: str, now: datetime) -> Any:
    with session_scope(engine) as session:
        return keyring.fetch_envelopes(session, principal=_principal(engine, name), now=now)


def _status(engine: Engine, name: str) -> keyring.KeyStatus:
    with session_scope(engine) as session:
        return keyring.key_status(session, principal=_principal(engine, name), now=T0)


def _rotation_ready(
    engine: Engine, members: tuple[str, ...] = ("m1", "m2")
) -> list[EnvelopeUpload]:
    """The custodian's and ``members``' keys approved; an envelope for each recipient."""
    register_and_approve(engine, [KEEPER, *members], T0)
    return sealed(_recipients(engine).recipients, key_id=KEY_ID, custodian=KEEPER, created_at=T0)


# ---------------------------------------------------------------------------------- registration


def test_a_registration_waits_for_approval_and_the_same_keys_again_change_nothing(
    forum: Engine,
) -> None:
    keys = keys_of("m1")
    first = register(forum, "m1", T0)
    again = register(forum, "m1", T0 + timedelta(hours=1))

    assert first.unchanged is False
    assert first.registration.state is KeyState.PENDING
    assert (first.registration.principal, first.registration.fingerprint) == (
        "m1",
        keys.fingerprint,
    )
    assert (first.registration.sealing_public, first.registration.signing_public) == (
        keys.sealing_public,
        keys.signing_public,
    )
    assert first.registration.registered_at == T0
    assert again == keyring.RegistrationOutcome(first.registration, unchanged=True)
    assert _status(forum, "m1") == keyring.KeyStatus("m1", None, first.registration, 0)
    assert _audited(forum, "keys.register") == [
        ("m1", "m1", {"fingerprint": keys.fingerprint, "replaced_pending": None, "in_use": None})
    ]
    assert _recipients(forum).recipients == []


def test_new_keys_wait_beside_the_approved_ones_which_retire_when_they_are_approved(
    forum: Engine,
) -> None:
    old, new = keys_of("m1"), keys_of("m1", 1)
    register(forum, "m1", T0)
    approval = approve(forum, "m1", old.fingerprint, T0 + timedelta(minutes=1))
    assert (approval.changed, approval.retired, approval.registration.state) == (
        True,
        None,
        KeyState.APPROVED,
    )
    assert approval.registration.approved_by == SETUP_ACTOR

    register(forum, "m1", T0 + timedelta(days=1), keys=new)
    status = _status(forum, "m1")
    assert status.approved is not None
    assert status.pending is not None
    assert (status.approved.fingerprint, status.pending.fingerprint) == (
        old.fingerprint,
        new.fingerprint,
    )
    assert [r.fingerprint for r in _recipients(forum).recipients] == [old.fingerprint]

    switched = approve(forum, "m1", new.fingerprint, T0 + timedelta(days=2))
    assert switched.retired is not None
    assert switched.retired.fingerprint == old.fingerprint
    assert [r.fingerprint for r in _recipients(forum).recipients] == [new.fingerprint]
    with session_scope(forum) as session:
        view = keyring.member_keys(session, name="m1")
    assert [(r.fingerprint, r.state, r.retired_at) for r in view.registrations] == [
        (old.fingerprint, KeyState.RETIRED, T0 + timedelta(days=2)),
        (new.fingerprint, KeyState.APPROVED, None),
    ]
    assert _audited(forum, "keys.approve") == [
        (SETUP_ACTOR, "m1", {"role": "member", "fingerprint": old.fingerprint, "retired": None}),
        (
            SETUP_ACTOR,
            "m1",
            {"role": "member", "fingerprint": new.fingerprint, "retired": old.fingerprint},
        ),
    ]


def test_newer_keys_replace_a_pending_registration_and_retired_keys_never_come_back(
    forum: Engine,
) -> None:
    first, second = keys_of("m1"), keys_of("m1", 1)
    register(forum, "m1", T0)
    replacing = register(forum, "m1", T0 + timedelta(minutes=5), keys=second)

    status = _status(forum, "m1")
    assert status.pending == replacing.registration
    assert _audited(forum, "keys.register")[-1][2] == {
        "fingerprint": second.fingerprint,
        "replaced_pending": first.fingerprint,
        "in_use": None,
    }
    with pytest.raises(PreconditionError, match="a retired registration cannot come back"):
        register(forum, "m1", T0 + timedelta(minutes=6), keys=first)
    with pytest.raises(PreconditionError, match=r"approve its current registration instead"):
        approve(forum, "m1", first.fingerprint, T0 + timedelta(minutes=7))
    assert _status(forum, "m1") == status


def test_registration_refuses_a_wrong_proof_malformed_keys_and_principals_without_keys(
    forum: Engine,
) -> None:
    keys = keys_of("m1")

    def attempt(name: str, **changes: bytes) -> None:
        fields = {
            "sealing_public": keys.sealing_public,
            "signing_public": keys.signing_public,
            "proof": registration_proof(name, keys),
            **changes,
        }
        with session_scope(forum) as session:
            keyring.register_keys(session, principal=_principal(forum, name), now=T0, **fields)

    with pytest.raises(InvalidArgumentError, match="the registration proof does not verify"):
        attempt("m1", proof=registration_proof("m2", keys))  # made for another name
    with pytest.raises(InvalidArgumentError, match="the registration proof does not verify"):
        attempt("m1", signing_public=keys_of("m2").signing_public)
    with pytest.raises(InvalidArgumentError, match="a sealing public key is 1216 bytes"):
        attempt("m1", sealing_public=keys.sealing_public[:-1])
    with pytest.raises(InvalidArgumentError, match="a signing public key is 32 bytes"):
        attempt("m1", signing_public=b"\x01" * 31)
    with pytest.raises(PermissionDeniedError, match="not a coordinator"):
        attempt("coord", proof=registration_proof("coord", keys))
    assert _status(forum, "m1") == keyring.KeyStatus("m1", None, None, 0)
    assert _audited(forum, "keys.register") == []


def test_approval_names_exactly_one_registration_of_an_active_principal(forum: Engine) -> None:
    fingerprint = register(forum, "m1", T0).registration.fingerprint
    register(forum, "m2", T0)

    with pytest.raises(NotFoundError) as unknown:
        approve(forum, "m2", fingerprint, T0)  # m1's keys, not m2's
    assert str(unknown.value) == (
        f"m2 has no key registration {fingerprint}: `sigshare-hub member keys m2` lists its "
        "registrations"
    )
    with pytest.raises(InvalidArgumentError, match="fingerprint 'SHA256:abc' is malformed"):
        approve(forum, "m1", "SHA256:abc", T0)
    with pytest.raises(NotFoundError, match="principal 'ghost' not found"):
        approve(forum, "ghost", fingerprint, T0)
    approve(forum, "m1", fingerprint, T0)
    again = approve(forum, "m1", fingerprint, T0 + timedelta(hours=1))
    assert (again.changed, again.registration.approved_at) == (False, T0)
    assert len(_audited(forum, "keys.approve")) == 1

    with session_scope(forum) as session:
        principals.revoke_principal(session, actor=SETUP_ACTOR, name="m2", now=T0)
    pending = keys_of("m2").fingerprint
    with pytest.raises(PreconditionError, match="member m2 is revoked"):
        approve(forum, "m2", pending, T0 + timedelta(seconds=1))


# ---------------------------------------------------------------------------------- recipients


def test_recipients_are_the_active_members_with_approved_keys(forum: Engine) -> None:
    keys = register_and_approve(forum, [KEEPER, "m1", "m3"], T0)
    register(forum, "m2", T0)  # pending only
    with session_scope(forum) as session:
        principals.revoke_principal(session, actor=SETUP_ACTOR, name="m3", now=T0)

    found = _recipients(forum, T0 + timedelta(seconds=1))
    assert [(r.principal, r.fingerprint) for r in found.recipients] == [
        ("m1", keys["m1"].fingerprint)
    ]
    assert (found.unregistered, found.rotation_due) == (["m2"], [])
    # Revocation takes effect at its time: before it, m3 was a recipient.
    assert [r.principal for r in _recipients(forum, T0 - timedelta(seconds=1)).recipients] == [
        "m1",
        "m3",
    ]
    with session_scope(forum) as session:
        custodians = keyring.list_custodians(session, now=T0)
    assert custodians == [
        keyring.CustodianKey(
            KEEPER, keys[KEEPER].signing_public, signing_fingerprint(keys[KEEPER].signing_public)
        )
    ]


# ---------------------------------------------------------------------------------- uploads


def test_an_upload_stores_one_envelope_per_recipient_and_each_member_opens_its_own(
    forum: Engine,
) -> None:
    activate = T0 + timedelta(days=1)
    register_and_approve(forum, [KEEPER, "m1", "m2"], T0)
    envelopes = sealed(
        _recipients(forum).recipients,
        key_id=KEY_ID,
        custodian=KEEPER,
        created_at=T0,
        activate_at=activate,
    )
    uploaded_at = T0 + timedelta(minutes=3)

    rotation = _upload(forum, envelopes, activate_at=activate, now=uploaded_at)

    total = sum(len(e.envelope) for e in envelopes)
    assert (rotation.key_id, rotation.custodian, rotation.created_at) == (
        KEY_ID,
        KEEPER,
        uploaded_at,
    )
    assert (rotation.activate_at, rotation.recipients, rotation.total_bytes) == (
        activate,
        2,
        total,
    )
    assert _stored(forum) == (1, 2)
    assert _audited(forum, "keys.rotate") == [
        (
            KEEPER,
            KEY_ID,
            {
                "recipients": ["m1", "m2"],
                "total_bytes": total,
                "activate_at": activate.isoformat(),
                "satisfied": [],
            },
        )
    ]
    assert _status(forum, "m1").envelopes_waiting == 1
    (fetched,) = _fetch(forum, "m1", T0 + timedelta(hours=1))
    assert (fetched.key_id, fetched.recipient, fetched.custodian) == (KEY_ID, "m1", KEEPER)
    assert (fetched.recipient_fingerprint, fetched.activate_at) == (
        keys_of("m1").fingerprint,
        activate,
    )
    assert fetched.envelope == envelopes[0].envelope
    opened = open_envelope(
        fetched.envelope,
        recipient="m1",
        keys=keys_of("m1"),
        custodian_signing_public=keys_of(KEEPER).signing_public,
    )
    assert opened.secret == secret_of(KEY_ID)
    assert _status(forum, "m1").envelopes_waiting == 0
    assert _status(forum, "m2").envelopes_waiting == 1


def test_fetching_records_every_pickup_and_audits_only_the_first(forum: Engine) -> None:
    _upload(forum, _rotation_ready(forum))
    first, later = T0 + timedelta(hours=1), T0 + timedelta(hours=2)

    _fetch(forum, "m1", first)
    (again,) = _fetch(forum, "m1", later)

    assert (again.first_fetched_at, again.last_fetched_at) == (first, first)  # as listed
    with session_scope(forum) as session:
        pickups = keyring.rotation_pickups(session, key_id=KEY_ID)
    assert pickups is not None
    assert [(p.recipient, p.first_fetched_at, p.last_fetched_at) for p in pickups.pickups] == [
        ("m1", first, later),
        ("m2", None, None),
    ]
    assert (pickups.fetched, pickups.not_fetched) == (1, ["m2"])
    assert _audited(forum, "keys.fetch") == [("m1", "m1", {"key_ids": [KEY_ID]})]
    assert _fetch(forum, "m3", later) == []  # no envelope, nothing audited
    assert len(_audited(forum, "keys.fetch")) == 1


def _swap_labels(envelopes: list[EnvelopeUpload]) -> list[EnvelopeUpload]:
    """m1's label on m2's envelope and the reverse: each header disagrees with its label."""
    first, second = envelopes
    return [
        dataclasses.replace(first, envelope=second.envelope),
        dataclasses.replace(second, envelope=first.envelope),
    ]


def _oversized(envelopes: list[EnvelopeUpload]) -> list[EnvelopeUpload]:
    padded = envelopes[1].envelope + bytes(MAX_ENVELOPE_BYTES + 1 - len(envelopes[1].envelope))
    return [envelopes[0], dataclasses.replace(envelopes[1], envelope=padded)]


REFUSED_UPLOADS: dict[
    str, tuple[Callable[[list[EnvelopeUpload]], list[EnvelopeUpload]], type[HubError], str]
] = {
    "an envelope missing": (
        lambda envelopes: envelopes[:1],
        PreconditionError,
        "the forum's recipients changed since you listed them: no envelope for m2; run the "
        "rotation again",
    ),
    "a header that disagrees": (
        _swap_labels,
        InvalidArgumentError,
        "the envelope for 'm1' disagrees with its upload: its header names recipient 'm2' "
        "where the upload says 'm1'; seal it again",
    ),
    "a label of another key id": (
        lambda envelopes: [envelopes[0], dataclasses.replace(envelopes[1], key_id="epoch-9")],
        InvalidArgumentError,
        "the envelope for 'm2' is labelled key_id 'epoch-9', but this upload is keeper's "
        "rotation to 'epoch-2'",
    ),
    "an oversized envelope": (
        _oversized,
        InvalidArgumentError,
        f"the envelope for 'm2' is {MAX_ENVELOPE_BYTES + 1} bytes; an envelope is at most "
        f"{MAX_ENVELOPE_BYTES} bytes",
    ),
    "bytes that are no envelope": (
        lambda envelopes: [envelopes[0], dataclasses.replace(envelopes[1], envelope=b"SGEV")],
        InvalidArgumentError,
        "the envelope for 'm2' is not a valid envelope: ",
    ),
    "a signature that does not verify": (
        lambda envelopes: [
            envelopes[0],
            dataclasses.replace(
                envelopes[1],
                envelope=envelopes[1].envelope[:-1] + bytes([envelopes[1].envelope[-1] ^ 1]),
            ),
        ],
        InvalidArgumentError,
        "the envelope for 'm2' names keeper's approved signing key SHA256:",
    ),
    "two envelopes for one member": (
        lambda envelopes: [envelopes[0], envelopes[0], envelopes[1]],
        InvalidArgumentError,
        "the upload holds two envelopes for 'm1'",
    ),
}


@pytest.mark.parametrize("case", list(REFUSED_UPLOADS))
def test_an_upload_is_refused_whole_and_stores_nothing(forum: Engine, case: str) -> None:
    change, error, message = REFUSED_UPLOADS[case]
    envelopes = _rotation_ready(forum)

    with pytest.raises(error) as refused:
        _upload(forum, change(envelopes))

    assert str(refused.value).startswith(message)
    assert _stored(forum) == (0, 0)
    assert _audited(forum, "keys.rotate") == []
    assert _upload(forum, envelopes).recipients == 2  # the genuine upload still goes through


def test_an_upload_is_refused_when_a_recipient_changed_keys_or_left_since_the_listing(
    forum: Engine,
) -> None:
    envelopes = _rotation_ready(forum, ("m1", "m2", "m3"))
    rekeyed = keys_of("m2", 1)
    register(forum, "m2", T0, keys=rekeyed)
    approve(forum, "m2", rekeyed.fingerprint, T0)
    with session_scope(forum) as session:
        principals.revoke_principal(session, actor=SETUP_ACTOR, name="m3", now=T0)

    with pytest.raises(PreconditionError) as refused:
        _upload(forum, envelopes, now=T0 + timedelta(seconds=1))

    assert str(refused.value) == (
        "the forum's recipients changed since you listed them: 'm3' not a recipient (revoked, "
        "or keys not approved); keys changed for m2; run the rotation again"
    )
    assert _stored(forum) == (0, 0)


def test_an_upload_needs_a_new_key_id(forum: Engine) -> None:
    envelopes = _rotation_ready(forum)
    _upload(forum, envelopes)
    with pytest.raises(AlreadyExistsError) as repeated:
        _upload(forum, envelopes)
    assert str(repeated.value) == (
        f"key id 'epoch-2' was rotated to at {T0.isoformat()} by keeper: a key id is "
        "distributed once; choose a new key id"
    )
    with session_scope(forum) as session:
        parameters.set_minhash_parameters(
            session, actor=SETUP_ACTOR, family="prompt", key_id="epoch-3", threshold=0.5, now=T0
        )
    current = sealed(
        _recipients(forum).recipients, key_id="epoch-3", custodian=KEEPER, created_at=T0
    )
    with pytest.raises(PreconditionError) as published:
        _upload(forum, current, key_id="epoch-3")
    assert str(published.value) == (
        "key id 'epoch-3' is the one the forum publishes now (for prompt): a rotation needs a "
        "new key id"
    )
    with pytest.raises(InvalidArgumentError, match="key id 'bad key' is invalid"):
        _upload(forum, current, key_id="bad key")
    assert _stored(forum) == (1, 2)


def test_an_upload_needs_the_custodians_approved_keys_to_have_signed_it(forum: Engine) -> None:
    register_and_approve(forum, ["m1"], T0)
    register(forum, KEEPER, T0)  # pending: not approved
    envelopes = sealed(
        _recipients(forum).recipients, key_id=KEY_ID, custodian=KEEPER, created_at=T0
    )
    with pytest.raises(PreconditionError, match="custodian keeper has no approved keys"):
        _upload(forum, envelopes)

    approve(forum, KEEPER, keys_of(KEEPER).fingerprint, T0)
    other = keys_of(KEEPER, 1)
    forged = sealed(
        _recipients(forum).recipients,
        key_id=KEY_ID,
        custodian=KEEPER,
        created_at=T0,
        custodian_keys=other,
    )
    with pytest.raises(PreconditionError) as unsigned:
        _upload(forum, forged)
    assert str(unsigned.value) == (
        f"the envelope for 'm1' was signed with key {other.signing_fingerprint}, but keeper's "
        f"approved signing key is {keys_of(KEEPER).signing_fingerprint}: seal with the keys the "
        "hub approved, or have the new keys approved first"
    )
    with (
        pytest.raises(PermissionDeniedError, match="only a custodian uploads envelopes"),
        session_scope(forum) as session,
    ):
        keyring.upload_envelopes(
            session,
            custodian=_principal(forum, "m1"),
            key_id=KEY_ID,
            activate_at=None,
            envelopes=envelopes,
            now=T0,
        )
    assert _stored(forum) == (0, 0)


def test_an_upload_without_any_recipient_is_refused(forum: Engine) -> None:
    register_and_approve(forum, [KEEPER], T0)
    with pytest.raises(PreconditionError, match="no active member has approved keys"):
        _upload(forum, [])


def test_the_activation_time_is_the_envelopes_own_to_the_second(forum: Engine) -> None:
    envelopes_at = T0 + timedelta(days=1, microseconds=400_000)
    register_and_approve(forum, [KEEPER, "m1"], T0)
    recipients = _recipients(forum).recipients
    envelopes = sealed(
        recipients, key_id=KEY_ID, custodian=KEEPER, created_at=T0, activate_at=envelopes_at
    )
    later = T0 + timedelta(days=2)
    with pytest.raises(InvalidArgumentError) as refused:
        _upload(forum, envelopes, activate_at=later)
    assert str(refused.value) == (
        f"the envelope for 'm1' activates at {(T0 + timedelta(days=1)).isoformat()}, but the "
        f"upload says {later.isoformat()}: seal every envelope with the upload's activation time"
    )
    with pytest.raises(InvalidArgumentError, match=r"activates at .*, but the upload says -:"):
        _upload(forum, envelopes, activate_at=None)

    rotation = _upload(forum, envelopes, activate_at=envelopes_at)
    assert rotation.activate_at == T0 + timedelta(days=1)


# ---------------------------------------------------------------------------------- status


def test_a_requested_rotation_is_due_until_the_next_rotation_satisfies_it(forum: Engine) -> None:
    envelopes = _rotation_ready(forum)
    with session_scope(forum) as session:
        first = keyring.request_rotation(
            session, actor=SETUP_ACTOR, reason="member m9 revoked", now=T0
        )
        same = keyring.request_rotation(
            session, actor="cli:bob", reason=" member m9 revoked ", now=T0 + timedelta(hours=1)
        )
    assert same == first
    assert _recipients(forum).rotation_due == ["member m9 revoked"]
    assert _audited(forum, "keys.rotation_due") == [
        (SETUP_ACTOR, "member m9 revoked", {"request_id": first.id})
    ]
    with session_scope(forum) as session, pytest.raises(InvalidArgumentError):
        keyring.request_rotation(session, actor=SETUP_ACTOR, reason="   ", now=T0)

    _upload(forum, envelopes)

    assert _recipients(forum).rotation_due == []
    assert _audited(forum, "keys.rotate")[0][2]["satisfied"] == ["member m9 revoked"]
    with session_scope(forum) as session:
        status = keyring.rotation_status(session, now=T0)
    assert status.due == []


def test_rotation_status_counts_pickups_and_names_members_the_latest_rotation_missed(
    forum: Engine,
) -> None:
    _upload(forum, _rotation_ready(forum))
    _fetch(forum, "m2", T0 + timedelta(hours=1))
    register_and_approve(forum, ["m3"], T0 + timedelta(days=1))

    with session_scope(forum) as session:
        status = keyring.rotation_status(session, now=T0 + timedelta(days=1))
        latest = keyring.latest_rotation_key_id(session)
        view = keyring.member_keys(session, name="m2")
        approval = keyring.approve_keys(
            session,
            actor=SETUP_ACTOR,
            name="m3",
            fingerprint=keys_of("m3").fingerprint,
            now=T0 + timedelta(days=1),
        )
    assert [(p.rotation.key_id, p.rotation.recipients, p.fetched) for p in status.rotations] == [
        (KEY_ID, 2, 1)
    ]
    assert (status.due, status.uncovered, latest) == ([], ["m3"], KEY_ID)
    assert view.latest_rotation is not None
    assert view.latest_pickup is not None
    assert (view.latest_rotation.key_id, view.latest_pickup.first_fetched_at) == (
        KEY_ID,
        T0 + timedelta(hours=1),
    )
    assert (approval.changed, approval.in_latest_rotation) == (False, False)
