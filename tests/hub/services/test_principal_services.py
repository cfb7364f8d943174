"""Principal services on SQLite and PostgreSQL: credentials shown once and stored hashed,
authentication that refuses malformed, unknown, wrong and revoked credentials alike, and the
audit entries of every change."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from sigshare.hub.domain import Principal, Role
from sigshare.hub.errors import AlreadyExistsError, InvalidArgumentError, NotFoundError
from sigshare.hub.services import principals
from sigshare.hub.services.credentials import Credential, hash_secret, new_credential
from sigshare.hub.storage import session_scope
from sigshare.hub.storage.audit import AuditRepository
from sigshare.hub.storage.principals import PrincipalRepository

T0 = datetime(2026, 3, 1, 12, 0, 0, 250000, tzinfo=UTC)
ACTOR = "cli:alice"


def _add(
    engine: Engine, name: str = "acme", role: Role = Role.MEMBER, now: datetime = T0
) -> tuple[Principal, Credential]:
    with session_scope(engine) as session:
        return principals.add_principal(session, actor=ACTOR, name=name, role=role, now=now)


def _authenticate(engine: Engine, bearer: str, now: datetime = T0) -> Principal | None:
    with session_scope(engine) as session:
        return principals.authenticate(session, bearer, now)


def _audit_rows(engine: Engine) -> list[tuple[str, str, str, str]]:
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT actor, action, target, details FROM audit_log ORDER BY id")
        )
        return [(row.actor, row.action, row.target, row.details) for row in rows]


def test_add_stores_only_the_hash_and_returns_the_credential_once(engine: Engine) -> None:
    principal, credential = _add(engine, role=Role.COORDINATOR)

    assert principal.name == "acme"
    assert principal.role is Role.COORDINATOR
    assert principal.created_at == T0
    assert principal.revoked_at is None
    assert principal.credential_id == credential.credential_id
    assert principal.credential_hash == hash_secret(credential.secret)
    with session_scope(engine) as session:
        stored = PrincipalRepository(session).get_by_name("acme")
    assert stored == principal
    with engine.connect() as connection:
        row = connection.execute(text("SELECT * FROM principals")).one()
    assert credential.secret not in repr(tuple(row))


def test_add_writes_an_audit_entry_without_any_part_of_the_credential(engine: Engine) -> None:
    _, credential = _add(engine)

    rows = _audit_rows(engine)
    assert rows == [(ACTOR, "principal.add", "acme", '{"role":"member"}')]
    assert all(credential.secret not in field for field in rows[0])
    assert all(credential.credential_id not in field for field in rows[0])
    with session_scope(engine) as session:
        assert AuditRepository(session).verify() == 1


def test_add_refuses_a_taken_name_and_leaves_the_first_credential_working(
    engine: Engine,
) -> None:
    _, first = _add(engine)

    with pytest.raises(AlreadyExistsError, match="'acme' already exists"):
        _add(engine, role=Role.ADMIN)

    authenticated = _authenticate(engine, first.token)
    assert authenticated is not None
    assert authenticated.role is Role.MEMBER
    assert [row[1] for row in _audit_rows(engine)] == ["principal.add"]


@pytest.mark.parametrize("name", ["", "Acme", "acme corp", "-acme", "a" * 65])
def test_add_refuses_malformed_names_and_writes_nothing(engine: Engine, name: str) -> None:
    with pytest.raises(InvalidArgumentError, match="principal name"):
        _add(engine, name=name)
    with session_scope(engine) as session:
        assert principals.list_principals(session) == []
    assert _audit_rows(engine) == []


def test_list_includes_revoked_principals_by_name(engine: Engine) -> None:
    _add(engine, "zeta")
    _add(engine, "acme", Role.ADMIN)
    with session_scope(engine) as session:
        principals.revoke_principal(session, actor=ACTOR, name="zeta", now=T0)
    with session_scope(engine) as session:
        listed = principals.list_principals(session)
    assert [(p.name, p.role, p.revoked_at) for p in listed] == [
        ("acme", Role.ADMIN, None),
        ("zeta", Role.MEMBER, T0),
    ]


def test_authenticate_returns_the_principal_for_its_credential(engine: Engine) -> None:
    principal, credential = _add(engine)
    assert _authenticate(engine, credential.token) == principal
    assert _authenticate(engine, f"  {credential.token}\n") == principal


@pytest.mark.parametrize(
    "bearer",
    ["", "garbage", "sgs1_0123456789abcdef_short", "Bearer sgs1_x", "sgs2_" + "a" * 60],
)
def test_authenticate_refuses_malformed_credentials(engine: Engine, bearer: str) -> None:
    _add(engine)
    assert _authenticate(engine, bearer) is None


def test_authenticate_refuses_a_wrong_secret_and_an_unknown_id(engine: Engine) -> None:
    _, credential = _add(engine)
    stranger = new_credential()
    wrong_secret = Credential(credential.credential_id, stranger.secret)
    unknown_id = Credential(stranger.credential_id, credential.secret)

    assert _authenticate(engine, wrong_secret.token) is None
    assert _authenticate(engine, unknown_id.token) is None
    assert _authenticate(engine, stranger.token) is None


def test_authenticate_compares_a_secret_even_for_an_unknown_id(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    principal, credential = _add(engine)
    compared: list[bytes] = []
    real = principals.secret_matches

    def recording(secret: str, stored_hash: bytes) -> bool:
        compared.append(stored_hash)
        return real(secret, stored_hash)

    monkeypatch.setattr(principals, "secret_matches", recording)

    assert _authenticate(engine, new_credential().token) is None
    assert _authenticate(engine, credential.token) == principal
    assert len(compared) == 2
    unknown_hash, known_hash = compared
    assert known_hash == principal.credential_hash
    assert len(unknown_hash) == 32
    assert unknown_hash != known_hash


def test_revocation_takes_effect_at_its_time(engine: Engine) -> None:
    _, credential = _add(engine)
    revoked_at = T0 + timedelta(hours=1)
    with session_scope(engine) as session:
        revoked = principals.revoke_principal(session, actor=ACTOR, name="acme", now=revoked_at)
    assert revoked.revoked_at == revoked_at

    assert _authenticate(engine, credential.token, revoked_at) is None
    assert _authenticate(engine, credential.token, revoked_at + timedelta(days=1)) is None
    # A request stamped before the revocation (a clock read earlier) was still admitted.
    earlier = _authenticate(engine, credential.token, revoked_at - timedelta(microseconds=1))
    assert earlier is not None


def test_revoke_is_audited_and_revoking_again_keeps_the_first_time(engine: Engine) -> None:
    _add(engine)
    later = T0 + timedelta(days=2)
    with session_scope(engine) as session:
        principals.revoke_principal(session, actor=ACTOR, name="acme", now=T0)
    with session_scope(engine) as session:
        again = principals.revoke_principal(session, actor="cli:bob", name="acme", now=later)

    assert again.revoked_at == T0
    rows = _audit_rows(engine)
    assert [(actor, action, target) for actor, action, target, _ in rows] == [
        (ACTOR, "principal.add", "acme"),
        (ACTOR, "principal.revoke", "acme"),
        ("cli:bob", "principal.revoke", "acme"),
    ]
    expected = {
        "role": "member",
        "revoked_at": T0.isoformat(),
        "withdrawn_submissions": [],
        "withdrawn_confirmations": 0,
    }
    assert json.loads(rows[1][3]) == expected
    assert json.loads(rows[2][3]) == expected
    with session_scope(engine) as session:
        assert AuditRepository(session).verify() == 3


def test_revoke_of_an_unknown_principal_fails_and_writes_nothing(engine: Engine) -> None:
    with pytest.raises(NotFoundError, match="'ghost' not found"), session_scope(engine) as session:
        principals.revoke_principal(session, actor=ACTOR, name="ghost", now=T0)
    assert _audit_rows(engine) == []
