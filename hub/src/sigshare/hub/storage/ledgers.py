"""Members' query ledgers: the tokens each member asked about per kind, and when.

One row per member and kind holds the whole ledger (``sigshare.hub.matching.query_ledger``), read
with a row lock and rewritten once per request (only its times when no token was added or
dropped): a member's requests for a kind are serialised, different members' requests are not.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select, update
from sqlalchemy.orm import Session

from sigshare.hub.domain import utc
from sigshare.hub.errors import ConflictError
from sigshare.hub.matching.query_ledger import LedgerFormatError, QueryLedger
from sigshare.hub.storage._sql import dialect_insert
from sigshare.hub.storage.models import QueryLedgerRow


class QueryLedgerRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def get_for_update(self, member_id: int, kind: str, at: datetime) -> QueryLedger:
        """The member's ledger for ``kind`` (empty if none), locked until the transaction ends.

        The row is created first if missing, so two first requests of one member lock the same
        row (one waits for the other's insert) instead of both starting from an empty ledger.
        """
        empty = QueryLedger.empty()
        self._session.execute(
            dialect_insert(self._session)(QueryLedgerRow)
            .values(
                member_id=member_id,
                kind=kind,
                entries=0,
                tokens=empty.encode_tokens(),
                asked_at=empty.encode_times(),
                updated_at=utc(at),
            )
            .on_conflict_do_nothing(index_elements=["member_id", "kind"])
        )
        row = self._session.execute(
            select(QueryLedgerRow.tokens, QueryLedgerRow.asked_at)
            .where(QueryLedgerRow.member_id == member_id, QueryLedgerRow.kind == kind)
            .with_for_update()
        ).one_or_none()
        if row is None:  # only if a concurrent transaction deleted it: nothing does
            return empty
        try:
            return QueryLedger.decode(row.tokens, row.asked_at)
        except LedgerFormatError as error:
            raise ConflictError(f"query ledger of {kind!r} is unreadable: {error}") from None

    def put(
        self,
        member_id: int,
        kind: str,
        ledger: QueryLedger,
        at: datetime,
        *,
        tokens_changed: bool = True,
    ) -> None:
        """Store the member's ledger for ``kind``; ``tokens_changed=False`` rewrites only the
        times (the caller read the row with :meth:`get_for_update` and added no token)."""
        values: dict[str, object] = {
            "entries": len(ledger),
            "asked_at": ledger.encode_times(),
            "updated_at": utc(at),
        }
        if not tokens_changed:
            result = self._session.execute(
                update(QueryLedgerRow)
                .where(QueryLedgerRow.member_id == member_id, QueryLedgerRow.kind == kind)
                .values(values)
            )
            if cast(CursorResult[Any], result).rowcount == 1:
                return
        values.update(member_id=member_id, kind=kind, tokens=ledger.encode_tokens())
        statement = dialect_insert(self._session)(QueryLedgerRow).values(values)
        self._session.execute(
            statement.on_conflict_do_update(
                index_elements=["member_id", "kind"],
                set_={
                    name: statement.excluded[name]
                    for name in ("entries", "tokens", "asked_at", "updated_at")
                },
            )
        )

    def entries(self, member_id: int, kind: str) -> int:
        """How many distinct tokens the member's ledger for ``kind`` holds (0 if none)."""
        found = self._session.scalar(
            select(QueryLedgerRow.entries).where(
                QueryLedgerRow.member_id == member_id, QueryLedgerRow.kind == kind
            )
        )
        return int(found or 0)

    def clear_kind(self, kind: str) -> int:
        """Drop every member's ledger of ``kind``; how many there were. For a new key epoch,
        whose tokens have nothing in common with the ledgers' (``epochs.switch_epoch``)."""
        result = self._session.execute(delete(QueryLedgerRow).where(QueryLedgerRow.kind == kind))
        return int(cast(CursorResult[Any], result).rowcount)
