"""The append-only, hash-chained audit log: all SQL of the ``audit_log`` table, including its
paged listing (newest first, by keyset like every listing).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, func, select, text
from sqlalchemy.orm import Session

from sigshare.hub.domain import GENESIS_HASH, AuditEntry, audit_entry_hash, canonical_json, utc
from sigshare.hub.errors import AuditChainError, InvalidArgumentError
from sigshare.hub.listing import AUDIT_LISTING, AUDIT_SORT, AuditQuery, Page
from sigshare.hub.storage._sql import backend, keyset_page
from sigshare.hub.storage.models import AuditLogRow

_VERIFY_BATCH = 1000

AUDIT_LOCK_KEY = int.from_bytes(b"SIGSAUDT", "big")
"""Advisory lock serialising audit appends on PostgreSQL. Above 2³¹, so it can never equal a
``hashtext`` value (int4) used for the per-family locks."""

_AUDIT_FIELD_LIMITS = {"actor": 128, "action": 64, "target": 255}


def _audit_entry(row: AuditLogRow) -> AuditEntry:
    return AuditEntry(
        id=row.id,
        at=row.at,
        actor=row.actor,
        action=row.action,
        target=row.target,
        details=json.loads(row.details),
        prev_hash=row.prev_hash,
        entry_hash=row.entry_hash,
    )


def _filters(actor: str | None, action: str | None) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if actor is not None:
        conditions.append(AuditLogRow.actor == actor)
    if action is not None:
        conditions.append(AuditLogRow.action == action)
    return conditions


class AuditRepository:
    """The append-only, hash-chained audit log. There is deliberately no update or delete."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def append(
        self,
        actor: str,
        action: str,
        target: str,
        details: Mapping[str, Any],
        *,
        at: datetime | None = None,
    ) -> AuditEntry:
        """Chain a new entry onto the newest one; ``at`` defaults to now."""
        for field, value in (("actor", actor), ("action", action), ("target", target)):
            limit = _AUDIT_FIELD_LIMITS[field]
            if not isinstance(value, str) or not 1 <= len(value) <= limit:
                raise InvalidArgumentError(f"audit {field} must be 1-{limit} characters")
        try:
            details_json = canonical_json(dict(details))
        except (TypeError, ValueError) as exc:
            raise InvalidArgumentError(f"audit details must be plain JSON: {exc}") from exc
        stored_details = json.loads(details_json)  # hash exactly what verify() will read back
        moment = utc(at) if at is not None else datetime.now(UTC)

        if backend(self._session) == "postgresql":
            # Without it, two replicas read the same last hash and fork the chain (the unique
            # prev_hash then rejects the second). SQLite's BEGIN IMMEDIATE already serialises.
            self._session.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": AUDIT_LOCK_KEY}
            )
        last_hash = self._session.scalar(
            select(AuditLogRow.entry_hash).order_by(AuditLogRow.id.desc()).limit(1)
        )
        prev_hash = GENESIS_HASH if last_hash is None else last_hash
        row = AuditLogRow(
            at=moment,
            actor=actor,
            action=action,
            target=target,
            details=details_json,
            prev_hash=prev_hash,
            entry_hash=audit_entry_hash(
                prev_hash,
                at=moment,
                actor=actor,
                action=action,
                target=target,
                details=stored_details,
            ),
        )
        self._session.add(row)
        self._session.flush()
        return _audit_entry(row)

    def verify(self) -> int:
        """Walk the chain in id order; the number of entries, or :class:`AuditChainError`.

        Detects a modified entry (its hash no longer matches its fields) and a deleted, inserted
        or reordered one (its successor's ``prev_hash`` no longer matches). Deleting the newest
        entries leaves a shorter valid chain: anchor the head hash elsewhere to catch that.
        """
        # Plain rows, streamed: a long log never fills the session's identity map.
        statement = (
            select(
                AuditLogRow.id,
                AuditLogRow.at,
                AuditLogRow.actor,
                AuditLogRow.action,
                AuditLogRow.target,
                AuditLogRow.details,
                AuditLogRow.prev_hash,
                AuditLogRow.entry_hash,
            )
            .order_by(AuditLogRow.id)
            .execution_options(yield_per=_VERIFY_BATCH)
        )
        expected_prev = GENESIS_HASH
        checked = 0
        for row in self._session.execute(statement):
            if row.prev_hash != expected_prev:
                raise AuditChainError(
                    row.id,
                    "prev_hash does not match the previous entry's hash: "
                    "an entry before it was removed, inserted or reordered",
                )
            try:
                details = json.loads(row.details)
            except ValueError:
                raise AuditChainError(row.id, "details are not valid JSON") from None
            recomputed = audit_entry_hash(
                row.prev_hash,
                at=row.at,
                actor=row.actor,
                action=row.action,
                target=row.target,
                details=details,
            )
            if recomputed != row.entry_hash:
                raise AuditChainError(row.id, "entry hash does not match its contents")
            expected_prev = row.entry_hash
            checked += 1
        return checked

    def page(self, query: AuditQuery) -> Page[AuditEntry]:
        """The page of entries ``query`` asks for, newest first."""
        page = keyset_page(
            self._session,
            select(AuditLogRow).where(*_filters(query.actor, query.action)),
            listing=AUDIT_LISTING,
            sort=AUDIT_SORT,
            column=AuditLogRow.id,
            id_column=AuditLogRow.id,
            descending=True,
            size=query.size,
            cursor=query.cursor,
        )
        return page.with_items([_audit_entry(row) for row in page.items])

    def last_at(self, *, actor: str, action: str, within: int) -> datetime | None:
        """When ``actor``'s newest ``action`` entry among the log's newest ``within`` entries
        was made (``None``: none there). A range of the primary key: it costs at most
        ``within`` entries however long the log is."""
        newest = self._session.scalar(select(func.max(AuditLogRow.id)))
        if newest is None:
            return None
        return self._session.scalar(
            select(AuditLogRow.at)
            .where(*_filters(actor, action), AuditLogRow.id > newest - within)
            .order_by(AuditLogRow.id.desc())
            .limit(1)
        )

    def search(
        self, *, actor: str | None = None, action: str | None = None, limit: int = 100
    ) -> list[AuditEntry]:
        """The newest ``limit`` entries, newest first: the first page of :meth:`page`."""
        return self.page(AuditQuery(actor=actor, action=action, size=limit)).items
