"""The keyring repository's contract on SQLite and PostgreSQL: registrations and their states,
the principals whose keys are in use at a time, rotations stored with their envelopes all at
once, pickups decided by one conditional update, and rotation requests.

The repository stores what it is given: keys and envelopes here are placeholder bytes of the
right lengths (the services test genuine ones).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from sigshare.hub.domain import EnvelopePickup, KeyRegistration, KeyState, Role, RotationRequest
from sigshare.hub.errors import AlreadyExistsError, ConflictError
from sigshare.hub.storage import session_scope
from sigshare.hub.storage.keyring import KeyringRepository
from sigshare.hub.storage.principals import PrincipalRepository
from sigshare.keyring import SEALING_PUBLIC_BYTES, SIGNING_PUBLIC_BYTES

T0 = datetime(2026, 5, 4, 9, 30, tzinfo=UTC)
PRINCIPALS = {"keeper": Role.CUSTODIAN, "m1": Role.MEMBER, "m2": Role.MEMBER, "m3": Role.MEMBER}


@pytest.fixture
def ids(engine: Engine) -> dict[str, int]:
    """The principals' ids by name."""
    with session_scope(engine) as session:
        repository = PrincipalRepository(session)
        return {
            name: repository.add(name, role, f"{name:_<16}", bytes(32), created_at=T0).id
            for name, role in PRINCIPALS.items()
        }


def _add(session: Session, principal_id: int, number: int, at: datetime = T0) -> KeyRegistration:
    return KeyringRepository(session).add_registration(
        principal_id,
        sealing_public=bytes([number]) * SEALING_PUBLIC_BYTES,
        signing_public=bytes([number]) * SIGNING_PUBLIC_BYTES,
        fingerprint=f"SHA256:{number}",
        at=at,
    )


def _approved(engine: Engine, ids: dict[str, int], numbers: dict[str, int]) -> None:
    """Register and approve key ``numbers[name]`` for each name."""
    with session_scope(engine) as session:
        keyring = KeyringRepository(session)
        for name, number in numbers.items():
            registration = _add(session, ids[name], number)
            keyring.approve(registration.id, actor="cli:alice", at=T0)


def test_registrations_move_from_pending_to_approved_to_retired(
    engine: Engine, ids: dict[str, int]
) -> None:
    with session_scope(engine) as session:
        keyring = KeyringRepository(session)
        first = _add(session, ids["m1"], 1)
        assert first == KeyRegistration(
            id=first.id,
            principal_id=ids["m1"],
            principal="m1",
            sealing_public=bytes([1]) * SEALING_PUBLIC_BYTES,
            signing_public=bytes([1]) * SIGNING_PUBLIC_BYTES,
            fingerprint="SHA256:1",
            registered_at=T0,
        )
        assert (keyring.pending(ids["m1"]), keyring.approved(ids["m1"])) == (first, None)
        keyring.approve(first.id, actor="cli:alice", at=T0 + timedelta(minutes=1))
        second = _add(session, ids["m1"], 2, T0 + timedelta(days=1))
    with session_scope(engine) as session:
        keyring = KeyringRepository(session)
        approved = keyring.approved(ids["m1"])
        assert approved is not None
        assert (approved.fingerprint, approved.state, approved.approved_by) == (
            "SHA256:1",
            KeyState.APPROVED,
            "cli:alice",
        )
        assert keyring.pending(ids["m1"]) == second
        keyring.retire(approved.id, T0 + timedelta(days=2))
        keyring.approve(second.id, actor="cli:bob", at=T0 + timedelta(days=2))
    with session_scope(engine) as session:
        keyring = KeyringRepository(session)
        found = keyring.registrations(ids["m1"])
        assert [(r.fingerprint, r.state) for r in found] == [
            ("SHA256:1", KeyState.RETIRED),
            ("SHA256:2", KeyState.APPROVED),
        ]
        assert keyring.registration(ids["m1"], "SHA256:1") == found[0]
        assert keyring.registration(ids["m2"], "SHA256:1") is None
        assert keyring.pending(ids["m1"]) is None


def test_a_second_pending_registration_is_a_conflict_that_leaves_the_transaction_usable(
    engine: Engine, ids: dict[str, int]
) -> None:
    with session_scope(engine) as session:
        _add(session, ids["m1"], 1)
        with pytest.raises(ConflictError, match="retry"):
            _add(session, ids["m1"], 2)
        _add(session, ids["m2"], 2)
    with session_scope(engine) as session:
        keyring = KeyringRepository(session)
        assert [r.fingerprint for r in keyring.registrations(ids["m1"])] == ["SHA256:1"]
        assert [r.fingerprint for r in keyring.registrations(ids["m2"])] == ["SHA256:2"]


def test_keys_in_use_are_those_of_principals_of_the_role_active_at_the_time(
    engine: Engine, ids: dict[str, int]
) -> None:
    _approved(engine, ids, {"keeper": 9, "m3": 3, "m1": 1})
    with session_scope(engine) as session:
        _add(session, ids["m2"], 2)  # pending only
        PrincipalRepository(session).revoke("m3", T0 + timedelta(hours=1))
    with session_scope(engine) as session:
        keyring = KeyringRepository(session)
        before = keyring.in_use(Role.MEMBER, T0 + timedelta(minutes=59))
        after = keyring.in_use(Role.MEMBER, T0 + timedelta(hours=1))
        assert [(r.principal, r.fingerprint) for r in before] == [
            ("m1", "SHA256:1"),
            ("m3", "SHA256:3"),
        ]
        assert [r.principal for r in after] == ["m1"]
        assert [r.principal for r in keyring.in_use(Role.CUSTODIAN, T0)] == ["keeper"]
        assert keyring.without_keys(Role.MEMBER, T0) == ["m2"]
        assert keyring.without_keys(Role.CUSTODIAN, T0) == []


def test_a_rotation_is_stored_with_its_envelopes_and_a_key_id_only_once(
    engine: Engine, ids: dict[str, int]
) -> None:
    _approved(engine, ids, {"m1": 1, "m2": 2})
    with session_scope(engine) as session:
        keyring = KeyringRepository(session)
        recipients = keyring.in_use(Role.MEMBER, T0)
        rotation = keyring.add_rotation(
            key_id="epoch-2",
            custodian_id=ids["keeper"],
            activate_at=T0 + timedelta(days=1),
            envelopes=[(recipients[0], b"one"), (recipients[1], b"second")],
            at=T0,
        )
        assert (rotation.key_id, rotation.custodian, rotation.recipients) == (
            "epoch-2",
            "keeper",
            2,
        )
        assert (rotation.total_bytes, rotation.activate_at) == (9, T0 + timedelta(days=1))
        with pytest.raises(AlreadyExistsError, match="'epoch-2' was rotated to already"):
            keyring.add_rotation(
                key_id="epoch-2",
                custodian_id=ids["keeper"],
                activate_at=None,
                envelopes=[(recipients[0], b"again")],
                at=T0 + timedelta(hours=1),
            )
        keyring.add_rotation(
            key_id="epoch-3",
            custodian_id=ids["keeper"],
            activate_at=None,
            envelopes=[(recipients[0], b"three")],
            at=T0 + timedelta(days=3),
        )
    with session_scope(engine) as session:
        keyring = KeyringRepository(session)
        assert [r.key_id for r in keyring.rotations()] == ["epoch-3", "epoch-2"]
        assert keyring.rotation("epoch-2") == rotation
        latest = keyring.latest_rotation()
        assert latest is not None
        assert latest.key_id == "epoch-3"
        envelopes = keyring.envelopes_for(ids["m1"])
        assert [(e.key_id, e.envelope, e.custodian, e.recipient) for e in envelopes] == [
            ("epoch-2", b"one", "keeper", "m1"),
            ("epoch-3", b"three", "keeper", "m1"),
        ]
        assert [(e.recipient_fingerprint, e.activate_at, e.created_at) for e in envelopes] == [
            ("SHA256:1", T0 + timedelta(days=1), T0),
            ("SHA256:1", None, T0 + timedelta(days=3)),
        ]
        assert [e.envelope for e in keyring.envelopes_for(ids["m3"])] == []


def test_pickups_record_the_first_and_the_last_fetch(engine: Engine, ids: dict[str, int]) -> None:
    _approved(engine, ids, {"m1": 1, "m2": 2})
    first, later = T0 + timedelta(hours=1), T0 + timedelta(hours=5)
    with session_scope(engine) as session:
        keyring = KeyringRepository(session)
        recipients = keyring.in_use(Role.MEMBER, T0)
        keyring.add_rotation(
            key_id="epoch-2",
            custodian_id=ids["keeper"],
            activate_at=None,
            envelopes=[(r, b"sealed") for r in recipients],
            at=T0,
        )
    with session_scope(engine) as session:
        keyring = KeyringRepository(session)
        envelope_ids = [e.id for e in keyring.envelopes_for(ids["m1"])]
        assert keyring.waiting(ids["m1"]) == 1
        assert keyring.mark_fetched(envelope_ids, first) == ["epoch-2"]
        assert keyring.mark_fetched(envelope_ids, later) == []
        assert keyring.waiting(ids["m1"]) == 0
    with session_scope(engine) as session:
        keyring = KeyringRepository(session)
        assert keyring.pickups("epoch-2") == [
            EnvelopePickup(
                key_id="epoch-2",
                recipient="m1",
                recipient_fingerprint="SHA256:1",
                byte_size=6,
                first_fetched_at=first,
                last_fetched_at=later,
            ),
            EnvelopePickup(
                key_id="epoch-2",
                recipient="m2",
                recipient_fingerprint="SHA256:2",
                byte_size=6,
                first_fetched_at=None,
                last_fetched_at=None,
            ),
        ]
        assert keyring.pickup("epoch-2", ids["m3"]) is None
        assert keyring.fetched_counts() == {"epoch-2": 1}


def test_rotation_requests_stay_open_until_a_rotation_satisfies_them(
    engine: Engine, ids: dict[str, int]
) -> None:
    _approved(engine, ids, {"m1": 1})
    with session_scope(engine) as session:
        keyring = KeyringRepository(session)
        later = keyring.add_request(
            reason="member m9 revoked", requested_by="cli:alice", at=T0 + timedelta(hours=1)
        )
        earlier = keyring.add_request(reason="yearly", requested_by="cli:bob", at=T0)
        assert keyring.open_requests() == [earlier, later]
        keyring.add_rotation(
            key_id="epoch-2",
            custodian_id=ids["keeper"],
            activate_at=None,
            envelopes=[(keyring.in_use(Role.MEMBER, T0)[0], b"sealed")],
            at=T0 + timedelta(hours=2),
        )
        satisfied = keyring.satisfy_requests("epoch-2")
        assert satisfied == [
            RotationRequest(
                id=earlier.id,
                reason="yearly",
                requested_by="cli:bob",
                requested_at=T0,
                satisfied_by="epoch-2",
            ),
            RotationRequest(
                id=later.id,
                reason="member m9 revoked",
                requested_by="cli:alice",
                requested_at=T0 + timedelta(hours=1),
                satisfied_by="epoch-2",
            ),
        ]
    with session_scope(engine) as session:
        keyring = KeyringRepository(session)
        assert keyring.open_requests() == []
        assert keyring.satisfy_requests("epoch-2") == []
