"""Low-level SQL helpers shared by the storage repositories: the backend's dialect, chunked
``IN`` lists, random public ids, argument checks common to several tables and the keyset paging
every listing uses.

Lists of tokens or ids go to the database in chunks of :data:`IN_CHUNK`, below every backend's
limit on bound parameters.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, false, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.types import TypeDecorator

from sigshare.hub.domain import SHA256_BYTES
from sigshare.hub.errors import InvalidArgumentError
from sigshare.hub.listing import CURSOR_REFUSED, Cursor, Page, SortValue

IN_CHUNK = 500

_T = TypeVar("_T")


def backend(session: Session) -> str:
    """The name of the session's database dialect (``"postgresql"`` or ``"sqlite"``)."""
    return session.get_bind().dialect.name


def dialect_insert(session: Session) -> Any:
    """The backend's ``INSERT`` construct, which offers ``ON CONFLICT`` on both backends."""
    return postgresql.insert if backend(session) == "postgresql" else sqlite.insert


def chunks(items: Sequence[_T], size: int = IN_CHUNK) -> Iterator[Sequence[_T]]:
    """``items`` in consecutive slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def require_sha256(what: str, digest: bytes) -> None:
    """:class:`InvalidArgumentError` unless ``digest`` is the bytes of a SHA-256 digest."""
    if not isinstance(digest, bytes) or len(digest) != SHA256_BYTES:
        raise InvalidArgumentError(f"{what} must be {SHA256_BYTES} bytes (a SHA-256 digest)")


def new_public_id() -> str:
    """Opaque record ids: random, so they say nothing about the token or cluster behind them."""
    return secrets.token_hex(16)


def keyset_page(
    session: Session,
    statement: Select[Any],
    *,
    listing: str,
    sort: str,
    column: InstrumentedAttribute[Any],
    id_column: InstrumentedAttribute[int],
    descending: bool,
    size: int,
    cursor: Cursor | None,
) -> Page[Any]:
    """The page of ``statement``'s rows that ``cursor`` asks for (the first page without one).

    The order is ``column`` (descending or not), ties broken by ``id_column`` newest first.
    NULL sorts below every value on both backends (first ascending, last descending), so a
    nullable column pages like any other. The page comes with the number of matching rows, the
    position of its first row and the cursors of the pages on either side; a cursor whose sort
    value is not of ``column``'s type is refused like any other foreign token.
    """
    order = _Order(column, id_column, descending)
    if cursor is None:
        rows = list(session.scalars(statement.order_by(*order.by()).limit(size)))
    elif cursor.forward:
        anchor = order.follows(_sort_value(column, cursor.value), cursor.id)
        rows = list(session.scalars(statement.where(anchor).order_by(*order.by()).limit(size)))
    else:  # the rows just before the anchor: read backwards from it, shown in order
        anchor = order.precedes(_sort_value(column, cursor.value), cursor.id)
        found = statement.where(anchor).order_by(*order.by(reverse=True)).limit(size)
        rows = list(reversed(list(session.scalars(found))))
    total = _count(session, statement)
    if rows:
        first = (getattr(rows[0], column.key), getattr(rows[0], id_column.key))
        before = _count(session, statement.where(order.precedes(*first)))
    else:  # nothing follows a forward cursor, or precedes a backward one
        before = total if cursor is not None and cursor.forward else 0

    def token(row: Any, forward: bool) -> str:
        value = _row_value(column, row)
        return Cursor(
            listing, sort, descending, value, getattr(row, id_column.key), forward
        ).encode()

    return Page(
        rows,
        total,
        before + 1,
        next_cursor=token(rows[-1], True) if rows and before + len(rows) < total else None,
        previous_cursor=token(rows[0], False) if rows and before else None,
    )


class _Order:
    """A listing's order as SQL: ``ORDER BY`` and the rows on either side of a position."""

    def __init__(
        self,
        column: InstrumentedAttribute[Any],
        id_column: InstrumentedAttribute[int],
        descending: bool,
    ) -> None:
        self.column = column
        self.id_column = id_column
        self.descending = descending
        self.by_id = column.key == id_column.key
        self.nullable = bool(column.expression.nullable) and not self.by_id

    def by(self, *, reverse: bool = False) -> list[ColumnElement[Any]]:
        descending = self.descending != reverse
        if self.by_id:
            return [self.id_column.desc() if descending else self.id_column.asc()]
        key = self.column.desc() if descending else self.column.asc()
        if self.nullable:
            key = key.nulls_last() if descending else key.nulls_first()
        return [key, self.id_column.asc() if reverse else self.id_column.desc()]

    def follows(self, value: Any, row_id: int) -> ColumnElement[bool]:
        """Rows after the row ``(value, row_id)`` in this order."""
        if self.by_id:
            return self.id_column < row_id if self.descending else self.id_column > row_id
        return or_(
            self._beyond(value, self.descending),
            self._equal(value) & (self.id_column < row_id),
        )

    def precedes(self, value: Any, row_id: int) -> ColumnElement[bool]:
        """Rows before the row ``(value, row_id)`` in this order."""
        if self.by_id:
            return self.id_column > row_id if self.descending else self.id_column < row_id
        return or_(
            self._beyond(value, not self.descending),
            self._equal(value) & (self.id_column > row_id),
        )

    def _beyond(self, value: Any, descending: bool) -> ColumnElement[bool]:
        """Rows whose sort value comes strictly after ``value`` (NULL being the smallest)."""
        if not descending:
            return self.column.is_not(None) if value is None else self.column > value
        if value is None:
            return false()
        below: ColumnElement[bool] = self.column < value
        return or_(below, self.column.is_(None)) if self.nullable else below

    def _equal(self, value: Any) -> ColumnElement[bool]:
        return self.column.is_(None) if value is None else self.column == value


def _count(session: Session, statement: Select[Any]) -> int:
    return int(session.scalar(select(func.count()).select_from(statement.subquery())) or 0)


def _python_type(column: InstrumentedAttribute[Any]) -> type:
    column_type = column.type
    if isinstance(column_type, TypeDecorator):
        column_type = column_type.impl_instance
    python_type: type = column_type.python_type
    return python_type


def _row_value(column: InstrumentedAttribute[Any], row: Any) -> SortValue:
    value = getattr(row, column.key)
    return value.isoformat() if isinstance(value, datetime) else value


def _sort_value(column: InstrumentedAttribute[Any], value: SortValue) -> Any:
    """The cursor's sort value as ``column`` holds it; refused unless it is of its type (a
    time as the canonical ISO 8601 text of an aware UTC moment)."""
    if value is None:
        if column.expression.nullable:
            return None
        raise InvalidArgumentError(CURSOR_REFUSED)
    expected = _python_type(column)
    if expected is datetime and type(value) is str:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            moment = None
        if (
            moment is not None
            and moment.utcoffset() == timedelta(0)
            and moment.isoformat() == value
        ):
            return moment
    elif type(value) is expected:
        return value
    raise InvalidArgumentError(CURSOR_REFUSED)
