"""Coordinators' review records: filtered, sorted, paginated listings and the review history.

Listings count and page in the database (``LIMIT``/``OFFSET`` over indexed orderings), so a
page of a table with tens of thousands of rows costs the rows it shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar, cast

from sqlalchemy import ColumnElement, CursorResult, func, select, update
from sqlalchemy.orm import Session

from sigshare.hub.domain import (
    Campaign,
    RecordType,
    ReviewEvent,
    ReviewStatus,
    SharedIndicator,
    utc,
)
from sigshare.hub.errors import ConflictError, InvalidArgumentError
from sigshare.hub.storage.models import CampaignRow, ReviewEventRow, SharedIndicatorRow
from sigshare.hub.storage.results import ClusterRepository, IndicatorRepository

MAX_PAGE_SIZE = 500
IndicatorSort = Literal["created", "reporters", "last_seen", "status", "kind"]
CampaignSort = Literal["created", "members", "volume", "similarity", "status"]

_INDICATOR_ORDER: dict[str, Any] = {
    "created": SharedIndicatorRow.id,
    "reporters": SharedIndicatorRow.reporters,
    "last_seen": SharedIndicatorRow.last_seen,
    "status": SharedIndicatorRow.status,
    "kind": SharedIndicatorRow.kind,
}
_CAMPAIGN_ORDER: dict[str, Any] = {
    "created": CampaignRow.id,
    "members": CampaignRow.members,
    "volume": CampaignRow.volume,
    "similarity": CampaignRow.similarity,
    "status": CampaignRow.status,
}


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    total: int
    offset: int
    limit: int


@dataclass(frozen=True, slots=True)
class RecordState:
    record_type: RecordType
    record_id: str
    status: ReviewStatus
    assignee: str | None


def _page_bounds(offset: int, limit: int) -> tuple[int, int]:
    if offset < 0:
        raise InvalidArgumentError("offset must not be negative")
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidArgumentError(f"page size must be between 1 and {MAX_PAGE_SIZE}")
    return offset, limit


class ReviewRepository:
    """Review state and history of shared indicators and campaigns."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def indicators(
        self,
        *,
        kind: str | None = None,
        status: ReviewStatus | None = None,
        category: str | None = None,
        assignee: str | None = None,
        sort: IndicatorSort = "created",
        descending: bool = True,
        offset: int = 0,
        limit: int = 50,
    ) -> Page[SharedIndicator]:
        offset, limit = _page_bounds(offset, limit)
        if sort not in _INDICATOR_ORDER:
            raise InvalidArgumentError(f"cannot sort indicators by {sort!r}")
        conditions: list[ColumnElement[bool]] = []
        if kind:
            conditions.append(SharedIndicatorRow.kind == kind)
        if status:
            conditions.append(SharedIndicatorRow.status == status.value)
        if category:
            # Categories are a JSON list of strings; match one whole element.
            conditions.append(SharedIndicatorRow.categories.contains(f'"{category}"'))
        if assignee:
            conditions.append(SharedIndicatorRow.assignee == assignee)
        total = self._session.scalar(
            select(func.count()).select_from(SharedIndicatorRow).where(*conditions)
        )
        column = _INDICATOR_ORDER[sort]
        order = [column.desc() if descending else column.asc(), SharedIndicatorRow.id.desc()]
        rows = list(
            self._session.scalars(
                select(SharedIndicatorRow)
                .where(*conditions)
                .order_by(*order)
                .offset(offset)
                .limit(limit)
            )
        )
        items = IndicatorRepository(self._session).indicators_of(rows)
        return Page(items, int(total or 0), offset, limit)

    def campaigns(
        self,
        *,
        family: str | None = None,
        status: ReviewStatus | None = None,
        category: str | None = None,
        assignee: str | None = None,
        include_inactive: bool = False,
        sort: CampaignSort = "created",
        descending: bool = True,
        offset: int = 0,
        limit: int = 50,
    ) -> Page[Campaign]:
        offset, limit = _page_bounds(offset, limit)
        if sort not in _CAMPAIGN_ORDER:
            raise InvalidArgumentError(f"cannot sort campaigns by {sort!r}")
        conditions: list[ColumnElement[bool]] = []
        if not include_inactive:
            conditions.append(CampaignRow.active.is_(True))
        if family:
            conditions.append(CampaignRow.family == family)
        if status:
            conditions.append(CampaignRow.status == status.value)
        if category:
            conditions.append(CampaignRow.categories.contains(f'"{category}"'))
        if assignee:
            conditions.append(CampaignRow.assignee == assignee)
        total = self._session.scalar(
            select(func.count()).select_from(CampaignRow).where(*conditions)
        )
        column = _CAMPAIGN_ORDER[sort]
        order = [column.desc() if descending else column.asc(), CampaignRow.id.desc()]
        rows = list(
            self._session.scalars(
                select(CampaignRow).where(*conditions).order_by(*order).offset(offset).limit(limit)
            )
        )
        items = ClusterRepository(self._session).campaigns_of(rows)
        return Page(items, int(total or 0), offset, limit)

    def status_counts(self, record_type: RecordType) -> dict[ReviewStatus, int]:
        model: Any = SharedIndicatorRow if record_type is RecordType.INDICATOR else CampaignRow
        statement = select(model.status, func.count()).group_by(model.status)
        if record_type is RecordType.CAMPAIGN:
            statement = statement.where(CampaignRow.active.is_(True))
        counts = {status: 0 for status in ReviewStatus}
        for status, count in self._session.execute(statement):
            counts[ReviewStatus(status)] = int(count)
        return counts

    def record(self, record_id: str) -> RecordState | None:
        """The review state of the indicator or campaign with this public id."""
        for record_type, model in (
            (RecordType.INDICATOR, SharedIndicatorRow),
            (RecordType.CAMPAIGN, CampaignRow),
        ):
            row = self._session.execute(
                select(model.status, model.assignee).where(model.public_id == record_id)
            ).one_or_none()
            if row is not None:
                return RecordState(record_type, record_id, ReviewStatus(row[0]), row[1])
        return None

    def _model(self, state: RecordState) -> Any:
        return SharedIndicatorRow if state.record_type is RecordType.INDICATOR else CampaignRow

    def move(self, state: RecordState, *, to: ReviewStatus, at: datetime) -> None:
        """Move the record from the status ``state`` read to ``to``, compare-and-set: a
        transition another writer made since ``state`` was read is never overwritten
        (:class:`ConflictError`: read again and retry)."""
        model = self._model(state)
        result = self._session.execute(
            update(model)
            .where(model.public_id == state.record_id, model.status == state.status.value)
            .values(status=to.value, updated_at=utc(at))
        )
        if cast(CursorResult[Any], result).rowcount != 1:
            raise ConflictError(
                f"{state.record_type.value} {state.record_id} is no longer "
                f"{state.status.value}: someone else moved it meanwhile; reload and retry"
            )

    def assign(self, state: RecordState, *, assignee: str | None, at: datetime) -> None:
        """Give the record to ``assignee``; its status is left as it is, whatever it is now."""
        model = self._model(state)
        self._session.execute(
            update(model)
            .where(model.public_id == state.record_id)
            .values(assignee=assignee, updated_at=utc(at))
        )

    def add_event(
        self,
        state: RecordState,
        *,
        actor: str,
        at: datetime,
        from_status: ReviewStatus | None,
        to_status: ReviewStatus | None,
        assignee: str | None,
        note: str | None,
    ) -> ReviewEvent:
        row = ReviewEventRow(
            record_type=state.record_type.value,
            record_id=state.record_id,
            actor=actor,
            at=utc(at),
            from_status=None if from_status is None else from_status.value,
            to_status=None if to_status is None else to_status.value,
            assignee=assignee,
            note=note,
        )
        self._session.add(row)
        self._session.flush()
        return _event(row)

    def history(self, record_id: str) -> list[ReviewEvent]:
        rows = self._session.scalars(
            select(ReviewEventRow)
            .where(ReviewEventRow.record_id == record_id)
            .order_by(ReviewEventRow.id)
        )
        return [_event(row) for row in rows]


def _event(row: ReviewEventRow) -> ReviewEvent:
    return ReviewEvent(
        id=row.id,
        record_type=RecordType(row.record_type),
        record_id=row.record_id,
        actor=row.actor,
        at=row.at,
        from_status=None if row.from_status is None else ReviewStatus(row.from_status),
        to_status=None if row.to_status is None else ReviewStatus(row.to_status),
        assignee=row.assignee,
        note=row.note,
    )
