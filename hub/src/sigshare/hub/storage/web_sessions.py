"""Coordinators' browser sessions of the web console: all SQL of the ``web_sessions`` table.

A session is found by the SHA-256 of its cookie token; the token itself is never stored, so a
copy of the database does not let anyone resume a session.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select, update
from sqlalchemy.orm import Session

from sigshare.hub.domain import SHA256_BYTES, Principal, utc
from sigshare.hub.errors import InvalidArgumentError
from sigshare.hub.storage.models import PrincipalRow, WebSessionRow
from sigshare.hub.storage.principals import principal_from_row

MAX_CSRF_TOKEN_LENGTH = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class WebSession:
    """One browser session, without its token (only the token's hash is kept)."""

    id: int
    principal: Principal
    csrf_token: str
    created_at: datetime
    expires_at: datetime
    ended_at: datetime | None

    def is_open(self, at: datetime) -> bool:
        """Not ended and not expired at ``at``."""
        return self.ended_at is None and at < self.expires_at


def _require_hash(token_hash: bytes) -> None:
    if len(token_hash) != SHA256_BYTES:
        raise InvalidArgumentError(f"session token hashes are {SHA256_BYTES} bytes")


class WebSessionRepository:
    """Open, find and end browser sessions."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def add(
        self,
        *,
        token_hash: bytes,
        principal_id: int,
        csrf_token: str,
        created_at: datetime,
        expires_at: datetime,
    ) -> None:
        _require_hash(token_hash)
        if not 1 <= len(csrf_token) <= MAX_CSRF_TOKEN_LENGTH:
            raise InvalidArgumentError(f"CSRF tokens are 1-{MAX_CSRF_TOKEN_LENGTH} characters long")
        self._session.add(
            WebSessionRow(
                token_hash=token_hash,
                principal_id=principal_id,
                csrf_token=csrf_token,
                created_at=utc(created_at),
                expires_at=utc(expires_at),
                ended_at=None,
            )
        )
        self._session.flush()

    def find(self, token_hash: bytes) -> WebSession | None:
        """The session with this token hash and its principal as they are now, ended or not."""
        _require_hash(token_hash)
        found = self._session.execute(
            select(WebSessionRow, PrincipalRow)
            .join(PrincipalRow, PrincipalRow.id == WebSessionRow.principal_id)
            .where(WebSessionRow.token_hash == token_hash)
        ).one_or_none()
        if found is None:
            return None
        row, principal = found
        return WebSession(
            id=row.id,
            principal=principal_from_row(principal),
            csrf_token=row.csrf_token,
            created_at=row.created_at,
            expires_at=row.expires_at,
            ended_at=row.ended_at,
        )

    def end(self, token_hash: bytes, at: datetime) -> bool:
        """End the session if it is still open; whether it was."""
        _require_hash(token_hash)
        moment = utc(at)
        ended = self._session.execute(
            update(WebSessionRow)
            .where(
                WebSessionRow.token_hash == token_hash,
                WebSessionRow.ended_at.is_(None),
                WebSessionRow.expires_at > moment,
            )
            .values(ended_at=moment)
            .execution_options(synchronize_session=False)
        )
        return cast(CursorResult[Any], ended).rowcount == 1

    def end_all_of(self, principal_id: int, at: datetime) -> int:
        """End every open session of the principal (its credential changed); how many."""
        moment = utc(at)
        ended = self._session.execute(
            update(WebSessionRow)
            .where(
                WebSessionRow.principal_id == principal_id,
                WebSessionRow.ended_at.is_(None),
                WebSessionRow.expires_at > moment,
            )
            .values(ended_at=moment)
            .execution_options(synchronize_session=False)
        )
        return cast(CursorResult[Any], ended).rowcount

    def purge(self, before: datetime) -> int:
        """Delete sessions that expired or ended before ``before``; how many."""
        moment = utc(before)
        purged = self._session.execute(
            delete(WebSessionRow)
            .where((WebSessionRow.expires_at < moment) | (WebSessionRow.ended_at < moment))
            .execution_options(synchronize_session=False)
        )
        return cast(CursorResult[Any], purged).rowcount
