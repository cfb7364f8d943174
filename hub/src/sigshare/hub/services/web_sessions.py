"""Signing coordinators in and out of the web console: server-side sessions.

The browser holds a random 32-byte token (URL-safe base64 in a cookie); the hub keeps its
SHA-256, the CSRF token of the session and its lifetime. Every request resolves the session
afresh, principal included, so ending a session or revoking its principal's credential takes
effect at the next request. Only coordinators and admins may hold a session.

Sign-ins and sign-outs are audited here; refused sign-ins are rate-limited and audited in
aggregate per source address (``services.refusals``), with no credential material and no word
of why they were refused (an unknown credential and a member's look alike).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from sigshare.hub.domain import Principal, Role
from sigshare.hub.errors import InvalidArgumentError
from sigshare.hub.storage.audit import AuditRepository
from sigshare.hub.storage.web_sessions import WebSessionRepository

CONSOLE_ROLES = frozenset({Role.COORDINATOR, Role.ADMIN})
"""Who may sign in to the console. Members never may."""
TOKEN_BYTES = 32
KEEP_CLOSED_SESSIONS = timedelta(days=1)
"""Ended or expired sessions are deleted this long after they closed (sign-ins purge them)."""
MAX_SESSION_HOURS = 24 * 7


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _token_hash(token: str) -> bytes | None:
    """SHA-256 of the 32 bytes a cookie token encodes; ``None`` if it encodes no such thing."""
    if len(token) != 43:  # 32 bytes in unpadded base64
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=")
    except (binascii.Error, ValueError):
        return None
    if len(raw) != TOKEN_BYTES or _encode(raw) != token:
        return None
    return hashlib.sha256(raw).digest()


def may_sign_in(principal: Principal, now: datetime) -> bool:
    return principal.role in CONSOLE_ROLES and principal.is_active(now)


def start(
    session: Session, principal: Principal, now: datetime, hours: float, *, client: str = ""
) -> tuple[str, str]:
    """Open a session for ``principal``: ``(cookie token, CSRF token)``, each shown once.

    :class:`InvalidArgumentError` if the principal may not use the console or ``hours`` is
    not a sensible lifetime.
    """
    if not may_sign_in(principal, now):
        raise InvalidArgumentError("only active coordinators and admins may sign in")
    if not 0 < hours <= MAX_SESSION_HOURS:
        raise InvalidArgumentError(f"sessions last more than 0 and at most {MAX_SESSION_HOURS} h")
    raw = secrets.token_bytes(TOKEN_BYTES)
    token, csrf = _encode(raw), secrets.token_urlsafe(32)
    repository = WebSessionRepository(session)
    repository.purge(now - KEEP_CLOSED_SESSIONS)
    repository.add(
        token_hash=hashlib.sha256(raw).digest(),
        principal_id=principal.id,
        csrf_token=csrf,
        created_at=now,
        expires_at=now + timedelta(hours=hours),
    )
    AuditRepository(session).append(
        principal.name,
        "web.sign_in",
        principal.name,
        {"role": principal.role.value, "client": client[:64], "hours": hours},
        at=now,
    )
    return token, csrf


def resolve(session: Session, token: str, now: datetime) -> tuple[Principal, str] | None:
    """The principal signed in with ``token`` and the session's CSRF token, or ``None`` for an
    unknown, malformed, ended or expired session and for a principal that is revoked (or may
    not use the console) since it signed in."""
    token_hash = _token_hash(token)
    if token_hash is None:
        return None
    found = WebSessionRepository(session).find(token_hash)
    if found is None or not found.is_open(now) or not may_sign_in(found.principal, now):
        return None
    return found.principal, found.csrf_token


def end(session: Session, token: str, now: datetime) -> Principal | None:
    """End the session of ``token`` (signing out); its principal if it was open, and audited."""
    token_hash = _token_hash(token)
    if token_hash is None:
        return None
    repository = WebSessionRepository(session)
    found = repository.find(token_hash)
    if found is None or not repository.end(token_hash, now):
        return None
    AuditRepository(session).append(
        found.principal.name, "web.sign_out", found.principal.name, {}, at=now
    )
    return found.principal
