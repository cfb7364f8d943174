"""Members' confirmations of tokens and the shared-indicator records they add up to: all SQL
of the ``confirmations`` and ``shared_indicators`` tables.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from sigshare.hub.domain import ReviewStatus, SharedIndicator, utc
from sigshare.hub.storage._sql import backend, chunks, dialect_insert, new_public_id
from sigshare.hub.storage.models import ConfirmationRow, PrincipalRow, SharedIndicatorRow


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenConfirmation:
    token: bytes
    category: str
    first_seen: datetime | None
    last_seen: datetime | None


class IndicatorRepository:
    """Confirmations of tokens by members and the shared-indicator records they add up to."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def lock_kind(self, kind: str) -> None:
        """Serialise confirmations of one kind until the transaction ends (PostgreSQL).

        Two members confirming the same token at once must see each other's confirmation, or
        neither turns it into a shared indicator (or both try to insert it). On SQLite every
        transaction already holds the database's write lock.
        """
        if backend(self._session) == "postgresql":
            self._session.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                {"key": f"sigshare/indicators/{kind}"},
            )

    def confirm(
        self,
        *,
        kind: str,
        key_id: str,
        member_id: int,
        confirmations: Sequence[TokenConfirmation],
        at: datetime,
    ) -> None:
        """Record (or refresh) the member's confirmation of each token."""
        if not confirmations:
            return
        moment = utc(at)
        rows = [
            {
                "kind": kind,
                "key_id": key_id,
                "token": c.token,
                "member_id": member_id,
                "category": c.category,
                "first_seen": None if c.first_seen is None else utc(c.first_seen),
                "last_seen": None if c.last_seen is None else utc(c.last_seen),
                "confirmed_at": moment,
            }
            for c in confirmations
        ]
        statement = dialect_insert(self._session)(ConfirmationRow)
        statement = statement.on_conflict_do_update(
            index_elements=["kind", "key_id", "token", "member_id"],
            set_={
                name: statement.excluded[name]
                for name in ("category", "first_seen", "last_seen", "confirmed_at")
            },
        )
        for chunk in chunks(rows):
            self._session.execute(statement, list(chunk))

    def refresh_shared(
        self, *, kind: str, key_id: str, tokens: Sequence[bytes], quorum: int, at: datetime
    ) -> int:
        """Create or update the shared-indicator record of every token confirmed by at least
        ``quorum`` members, and bring the record of any other of ``tokens`` up to date with
        its confirmations (fewer after a member's were withdrawn); the number of ``tokens``
        that are shared indicators now."""
        moment = utc(at)
        grouped: dict[bytes, list[ConfirmationRow]] = defaultdict(list)
        for chunk in chunks(sorted(set(tokens))):
            for row in self._session.scalars(
                select(ConfirmationRow).where(
                    ConfirmationRow.kind == kind,
                    ConfirmationRow.key_id == key_id,
                    ConfirmationRow.token.in_(chunk),
                )
            ):
                grouped[row.token].append(row)
        shared = {token: rows for token, rows in grouped.items() if len(rows) >= quorum}
        existing = {
            row.token: row
            for chunk in chunks(sorted(set(tokens)))
            for row in self._session.scalars(
                select(SharedIndicatorRow).where(
                    SharedIndicatorRow.kind == kind,
                    SharedIndicatorRow.key_id == key_id,
                    SharedIndicatorRow.token.in_(chunk),
                )
            )
        }
        below = {token: grouped.get(token, []) for token in existing if token not in shared}
        for token, rows in [*shared.items(), *below.items()]:
            firsts = [r.first_seen for r in rows if r.first_seen is not None]
            lasts = [r.last_seen for r in rows if r.last_seen is not None]
            values = {
                "reporters": len(rows),
                "categories": json.dumps(sorted({r.category for r in rows if r.category})),
                "first_seen": min(firsts) if firsts else None,
                "last_seen": max(lasts) if lasts else None,
                "updated_at": moment,
            }
            record = existing.get(token)
            if record is None:
                self._session.add(
                    SharedIndicatorRow(
                        public_id=new_public_id(),
                        kind=kind,
                        key_id=key_id,
                        token=token,
                        status=ReviewStatus.NEW.value,
                        created_at=moment,
                        **values,
                    )
                )
            else:
                for name, value in values.items():
                    setattr(record, name, value)
        self._session.flush()
        return len(shared)

    def confirmed_kinds(self, member_id: int) -> list[str]:
        """The kinds of the member's confirmations, by name."""
        return list(
            self._session.scalars(
                select(ConfirmationRow.kind)
                .where(ConfirmationRow.member_id == member_id)
                .distinct()
                .order_by(ConfirmationRow.kind)
            )
        )

    def withdraw_confirmations(self, member_id: int) -> dict[tuple[str, str], list[bytes]]:
        """Delete the member's confirmations; the tokens they were of, by (kind, key id). The
        caller refreshes those tokens' records (:meth:`refresh_shared`)."""
        withdrawn: dict[tuple[str, str], list[bytes]] = defaultdict(list)
        for kind, key_id, token in self._session.execute(
            delete(ConfirmationRow)
            .where(ConfirmationRow.member_id == member_id)
            .returning(ConfirmationRow.kind, ConfirmationRow.key_id, ConfirmationRow.token)
        ):
            withdrawn[(kind, key_id)].append(token)
        return dict(withdrawn)

    def for_member(self, member_id: int, kind: str | None = None) -> list[SharedIndicator]:
        """Shared indicators among the tokens this member confirmed itself."""
        statement = (
            select(SharedIndicatorRow)
            .join(
                ConfirmationRow,
                (ConfirmationRow.kind == SharedIndicatorRow.kind)
                & (ConfirmationRow.key_id == SharedIndicatorRow.key_id)
                & (ConfirmationRow.token == SharedIndicatorRow.token),
            )
            .where(ConfirmationRow.member_id == member_id)
            .order_by(SharedIndicatorRow.id)
        )
        if kind:
            statement = statement.where(SharedIndicatorRow.kind == kind)
        return self.indicators_of(list(self._session.scalars(statement)))

    def indicator(self, public_id: str) -> SharedIndicator | None:
        """The shared indicator with this public id (token included: the caller blanks it
        before anything is shown)."""
        row = self._session.scalar(
            select(SharedIndicatorRow).where(SharedIndicatorRow.public_id == public_id)
        )
        return None if row is None else self.indicators_of([row])[0]

    def indicators_of(self, rows: Sequence[SharedIndicatorRow]) -> list[SharedIndicator]:
        names: dict[tuple[str, str, bytes], list[str]] = defaultdict(list)
        by_key: dict[tuple[str, str], list[bytes]] = defaultdict(list)
        for row in rows:
            by_key[(row.kind, row.key_id)].append(row.token)
        for (kind, key_id), tokens in by_key.items():
            for chunk in chunks(tokens):
                for token, name in self._session.execute(
                    select(ConfirmationRow.token, PrincipalRow.name)
                    .join(PrincipalRow, PrincipalRow.id == ConfirmationRow.member_id)
                    .where(
                        ConfirmationRow.kind == kind,
                        ConfirmationRow.key_id == key_id,
                        ConfirmationRow.token.in_(chunk),
                    )
                ):
                    names[(kind, key_id, token)].append(name)
        return [
            SharedIndicator(
                id=row.public_id,
                kind=row.kind,
                key_id=row.key_id,
                token=row.token,
                reporters=row.reporters,
                reporter_names=tuple(sorted(names[(row.kind, row.key_id, row.token)])),
                categories=tuple(json.loads(row.categories)),
                first_seen=row.first_seen,
                last_seen=row.last_seen,
                status=ReviewStatus(row.status),
                created_at=row.created_at,
                updated_at=row.updated_at,
                assignee=row.assignee,
                member_note=row.member_note,
            )
            for row in rows
        ]
