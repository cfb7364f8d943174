"""Moving the forum to a new key epoch (``sigshare-hub params epoch``), on SQLite and PostgreSQL
over a running hub: members that hold the next epoch's secret send their sketches ahead, the
hub keeps them pending (counted nowhere), and the switch makes them active in one transaction,
so answers continue without a gap. Every answer is checked against the exact oracle of
:mod:`tests.support.hub`.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sigshare.client.errors import HubRejectedError
from sigshare.client.hub_client import HubClient, ResolveResult, SubmitResult
from sigshare.hub.domain import Role, SubmissionStatus
from sigshare.hub.errors import PreconditionError
from sigshare.hub.services import epochs, keyring, principals
from sigshare.hub.storage import session_scope
from sigshare.hub.storage.principals import PrincipalRepository
from sigshare.hub.storage.submissions import SubmissionRepository
from sigshare.sketch.bloom import BloomParams
from sigshare.sketch.codec import SketchFormat, encode_bloom
from sigshare.sketch.keys import KeyPurpose
from sigshare.sketch.prf import KeyedPRF, tokens_to_bytes
from tests.support.hub import (
    EMAIL,
    EMAIL_CAPACITY,
    EMAIL_FPR,
    KEY_ID,
    MAX_MEMBERS,
    MEMBERS,
    EmailForum,
    RunningHub,
    email_forum,
    overlapping_sets,
    resolved_counts,
    submit_email,
)
from tests.support.hub_keys import register_and_approve, sealed, secret_of

NEXT = "epoch-2"
CUSTODIAN = "keeper"
QUORUM = 2


def next_forum(sets: dict[str, frozenset[str]]) -> EmailForum:
    """The same members' sets under the next epoch's secret and parameters."""
    return EmailForum(
        dict(sets),
        KeyedPRF(secret_of(NEXT).derive(KeyPurpose.BLOOM_TOKEN, EMAIL)),
        BloomParams.for_forum(EMAIL, NEXT, EMAIL_CAPACITY, EMAIL_FPR, MAX_MEMBERS),
    )


def rotate(hub: RunningHub, now: datetime) -> None:
    """A custodian with approved keys seals :data:`NEXT` to every member and uploads it."""
    with session_scope(hub.engine) as session:
        principals.add_principal(
            session, actor="test", name=CUSTODIAN, role=Role.CUSTODIAN, now=now
        )
    keys = register_and_approve(hub.engine, [CUSTODIAN, *MEMBERS], now)
    with session_scope(hub.engine) as session:
        recipients = keyring.list_recipients(session, now=now).recipients
        custodian = PrincipalRepository(session).get_by_name(CUSTODIAN)
        assert custodian is not None
        keyring.upload_envelopes(
            session,
            custodian=custodian,
            key_id=NEXT,
            activate_at=None,
            envelopes=sealed(
                recipients,
                key_id=NEXT,
                custodian=CUSTODIAN,
                created_at=now,
                custodian_keys=keys[CUSTODIAN],
            ),
            now=now,
        )


def submit_under(client: HubClient, forum: EmailForum, member: str, key_id: str) -> SubmitResult:
    bloom = forum.bloom(member)
    return client.submit(
        sketch_format=SketchFormat.BLOOM_V1,
        kind=EMAIL,
        key_id=key_id,
        params_digest=forum.params.digest(),
        declared_count=bloom.count,
        payload=encode_bloom(bloom),
    )


def resolve_under(client: HubClient, forum: EmailForum, member: str, key_id: str) -> ResolveResult:
    values = sorted(forum.sets[member])
    return client.resolve(EMAIL, key_id, b"".join(tokens_to_bytes(forum.prf.tokens(values))))


def statuses(hub: RunningHub, member: str) -> dict[str, str]:
    """``member``'s e-mail submissions by key id → status (its live ones)."""
    with session_scope(hub.engine) as session:
        principal = PrincipalRepository(session).get_by_name(member)
        assert principal is not None
        return {
            s.key_id: s.status.value
            for s in SubmissionRepository(session).of_member(principal.id)
            if s.family_kind == EMAIL
        }


def switch(hub: RunningHub, now: datetime) -> epochs.EpochSwitch:
    with session_scope(hub.engine) as session:
        return epochs.switch_epoch(session, actor="cli:operator", key_id=NEXT, now=now)


def test_sent_ahead_filters_count_nowhere_until_the_switch_then_answer_without_a_gap(
    hub: RunningHub,
) -> None:
    now = datetime.now(UTC)
    sets = overlapping_sets()
    old, new = email_forum(sets), next_forum(sets)
    clients = {m: hub.client(m) for m in MEMBERS}
    for member in MEMBERS:
        submit_email(clients[member], old, member)
    before = {
        m: resolved_counts(old, m, resolve_under(clients[m], old, m, KEY_ID), QUORUM)
        for m in MEMBERS
    }
    assert clients["m1"].get_parameters().next_key_id is None

    rotate(hub, now)
    assert clients["m1"].get_parameters().next_key_id == NEXT
    # Three members send ahead; m4 does not (it missed the night).
    for member in ("m1", "m2", "m3"):
        result = submit_under(clients[member], new, member, NEXT)
        assert not result.duplicate
        assert submit_under(
            clients[member], new, member, NEXT
        ).duplicate  # a resend changes nothing
    assert statuses(hub, "m1") == {KEY_ID: "active", NEXT: "pending"}
    # Pending filters count nowhere: the old epoch answers exactly as before, the new one not yet.
    for member in MEMBERS:
        assert (
            resolved_counts(
                old, member, resolve_under(clients[member], old, member, KEY_ID), QUORUM
            )
            == before[member]
        )
    with pytest.raises(HubRejectedError, match="not the forum's current key id 'epoch-1'"):
        resolve_under(clients["m1"], new, "m1", NEXT)

    moved = switch(hub, now)
    assert [(m.subject, m.name, m.previous_key_id, m.senders, m.carried) for m in moved.moved] == [
        ("kind", EMAIL, KEY_ID, 4, 3),
        ("family", "prompt", KEY_ID, 0, 0),
    ]
    assert clients["m1"].get_parameters().next_key_id is None
    assert statuses(hub, "m1") == {NEXT: "active"}
    assert statuses(hub, "m4") == {}  # its old-epoch filter ended at the switch
    # No gap: right after the switch, without any member sending anything, the three that sent
    # ahead get exactly the answers of a forum of the three.
    three = next_forum({m: sets[m] for m in ("m1", "m2", "m3")})
    for member in ("m1", "m2", "m3"):
        resolved_counts(three, member, resolve_under(clients[member], new, member, NEXT), QUORUM)
    with pytest.raises(HubRejectedError, match="not the forum's current key id 'epoch-2'"):
        resolve_under(clients["m4"], old, "m4", KEY_ID)
    # m4 catches up the next night: from then on the forum of four answers exactly again.
    submit_under(clients["m4"], new, "m4", NEXT)
    for member in MEMBERS:
        resolved_counts(new, member, resolve_under(clients[member], new, member, NEXT), QUORUM)
    # Re-sending the carried filter under the now current epoch is the same submission.
    assert submit_under(clients["m1"], new, "m1", NEXT).duplicate


def test_only_the_announced_next_epoch_is_accepted_ahead(hub: RunningHub) -> None:
    now = datetime.now(UTC)
    sets = overlapping_sets()
    client = hub.client("m1")
    with pytest.raises(HubRejectedError, match="sketch made with key id 'epoch-2'"):
        submit_under(client, next_forum(sets), "m1", NEXT)  # no rotation yet
    rotate(hub, now)
    third = EmailForum(
        dict(sets),
        KeyedPRF(secret_of("epoch-3").derive(KeyPurpose.BLOOM_TOKEN, EMAIL)),
        BloomParams.for_forum(EMAIL, "epoch-3", EMAIL_CAPACITY, EMAIL_FPR, MAX_MEMBERS),
    )
    with pytest.raises(HubRejectedError, match="sketch made with key id 'epoch-3'"):
        submit_under(client, third, "m1", "epoch-3")
    assert statuses(hub, "m1") == {}


def test_a_newer_filter_sent_ahead_replaces_the_pending_one(hub: RunningHub) -> None:
    now = datetime.now(UTC)
    sets = overlapping_sets()
    rotate(hub, now)
    client = hub.client("m1")
    first = submit_under(client, next_forum(sets), "m1", NEXT)
    grown = {**sets, "m1": sets["m1"] | {"late@example.org"}}
    second = submit_under(client, next_forum(grown), "m1", NEXT)
    assert second.submission_id != first.submission_id
    with session_scope(hub.engine) as session:
        repository = SubmissionRepository(session)
        older, newer = repository.get(first.submission_id), repository.get(second.submission_id)
        assert older is not None
        assert newer is not None
        assert (older.status, newer.status) == (
            SubmissionStatus.SUPERSEDED,
            SubmissionStatus.PENDING,
        )
    assert switch(hub, now).moved[0].carried == 1
    assert statuses(hub, "m1") == {NEXT: "active"}


def test_a_revoked_members_filter_sent_ahead_is_withdrawn_with_it(hub: RunningHub) -> None:
    now = datetime.now(UTC)
    sets = overlapping_sets()
    rotate(hub, now)
    for member in ("m1", "m2"):
        submit_under(hub.client(member), next_forum(sets), member, NEXT)
    with session_scope(hub.engine) as session:
        principals.revoke_principal(session, actor="test", name="m2", now=now)
    assert statuses(hub, "m2") == {}
    assert switch(hub, now).moved[0].carried == 1


def test_switching_needs_a_sealed_rotation_unless_the_secret_went_out_of_band(
    hub: RunningHub,
) -> None:
    now = datetime.now(UTC)
    with (
        session_scope(hub.engine) as session,
        pytest.raises(PreconditionError, match="no sealed rotation distributed key id 'epoch-2'"),
    ):
        epochs.switch_epoch(session, actor="cli:operator", key_id=NEXT, now=now)
    with session_scope(hub.engine) as session:
        done = epochs.switch_epoch(
            session, actor="cli:operator", key_id=NEXT, out_of_band=True, now=now
        )
    assert (done.sealed, [m.name for m in done.moved]) == (False, [EMAIL, "prompt"])
    with session_scope(hub.engine) as session:
        again = epochs.switch_epoch(
            session, actor="cli:operator", key_id=NEXT, out_of_band=True, now=now
        )
    assert (again.moved, [m.name for m in again.already]) == ([], [EMAIL, "prompt"])


def test_a_switch_to_another_epoch_ends_what_was_sent_ahead(hub: RunningHub) -> None:
    now = datetime.now(UTC)
    sets = overlapping_sets()
    rotate(hub, now)
    client = hub.client("m1")
    submit_email(client, email_forum(sets), "m1")
    ahead = submit_under(client, next_forum(sets), "m1", NEXT)
    with session_scope(hub.engine) as session:
        moved = epochs.switch_epoch(
            session, actor="cli:operator", key_id="epoch-3", out_of_band=True, now=now
        )
    assert [(m.name, m.carried) for m in moved.moved] == [(EMAIL, 0), ("prompt", 0)]
    assert statuses(hub, "m1") == {}
    with session_scope(hub.engine) as session:
        ended = SubmissionRepository(session).get(ahead.submission_id)
        assert ended is not None
        assert ended.status is SubmissionStatus.EXPIRED
