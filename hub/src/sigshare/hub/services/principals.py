"""Principals: register, list, revoke, and authenticate a bearer credential.

A credential's secret exists in plain only in the value :func:`add_principal` returns, for the
caller to show its owner once; the database, the audit log and any log line see the hash or
nothing. Authentication reads the principal on every call, so a revocation takes effect at once.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy.orm import Session

from sigshare.hub.domain import Principal, Role
from sigshare.hub.services.credentials import (
    Credential,
    hash_secret,
    new_credential,
    parse_credential,
    secret_matches,
)
from sigshare.hub.storage.repositories import AuditRepository, PrincipalRepository

_UNKNOWN_ID_HASH = hash_secret(secrets.token_urlsafe(32))
"""Compared against when a credential id is unknown, so that both outcomes cost the same."""


def add_principal(
    session: Session, *, actor: str, name: str, role: Role, now: datetime
) -> tuple[Principal, Credential]:
    """Register ``name`` with a fresh credential; the caller hands ``credential.token`` over once.

    :class:`AlreadyExistsError` if the name is taken, :class:`InvalidArgumentError` if it or the
    role is malformed. The audit entry records the role only, never any part of the credential.
    """
    credential = new_credential()
    principal = PrincipalRepository(session).add(
        name, role, credential.credential_id, credential.secret_hash, created_at=now
    )
    AuditRepository(session).append(
        actor, "principal.add", principal.name, {"role": principal.role.value}, at=now
    )
    return principal, credential


def list_principals(session: Session) -> list[Principal]:
    """Every principal by name, revoked ones included (the caller decides what to show)."""
    return PrincipalRepository(session).list()


def revoke_principal(session: Session, *, actor: str, name: str, now: datetime) -> Principal:
    """Revoke ``name``'s credential from ``now`` on; :class:`NotFoundError` if there is no such
    principal. Revoking again keeps the first revocation time but is audited all the same."""
    principal = PrincipalRepository(session).revoke(name, now)
    assert principal.revoked_at is not None  # revoke() sets it or raises
    AuditRepository(session).append(
        actor,
        "principal.revoke",
        principal.name,
        {"role": principal.role.value, "revoked_at": principal.revoked_at.isoformat()},
        at=now,
    )
    return principal


def authenticate(session: Session, bearer: str, now: datetime) -> Principal | None:
    """The active principal holding ``bearer``, or ``None`` — for a malformed, unknown, wrong or
    revoked credential alike, so callers cannot tell (and cannot leak) which it was.

    The secret is compared in constant time even when the id is unknown, so the response time
    does not reveal which credential ids exist.
    """
    presented = parse_credential(bearer)
    if presented is None:
        return None
    principal = PrincipalRepository(session).get_by_credential_id(presented.credential_id)
    stored_hash = _UNKNOWN_ID_HASH if principal is None else principal.credential_hash
    matches = secret_matches(presented.secret, stored_hash)
    if principal is None or not matches or not principal.is_active(now):
        return None
    return principal
