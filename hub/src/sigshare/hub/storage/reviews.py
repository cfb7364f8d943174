"""Coordinators' review records: filtered, sorted, paged listings and the review history.

Listings filter, count and page in the database, by keyset over indexed orderings
(:func:`~sigshare.hub.storage._sql.keyset_page`), so a page of a table with tens of thousands
of rows costs the rows it shows, however deep it lies.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, func, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from sigshare.hub.domain import (
    Campaign,
    RecordType,
    ReviewEvent,
    ReviewEventKind,
    ReviewStatus,
    SharedIndicator,
    utc,
)
from sigshare.hub.errors import ConflictError
from sigshare.hub.listing import Page, RecordQuery
from sigshare.hub.storage._sql import keyset_page
from sigshare.hub.storage.campaigns import ClusterRepository
from sigshare.hub.storage.indicators import IndicatorRepository
from sigshare.hub.storage.models import CampaignRow, ReviewEventRow, SharedIndicatorRow

_INDICATOR_ORDER: dict[str, InstrumentedAttribute[Any]] = {
    "created": SharedIndicatorRow.id,
    "reporters": SharedIndicatorRow.reporters,
    "last_seen": SharedIndicatorRow.last_seen,
    "status": SharedIndicatorRow.status,
    "kind": SharedIndicatorRow.kind,
}
_CAMPAIGN_ORDER: dict[str, InstrumentedAttribute[Any]] = {
    "created": CampaignRow.id,
    "members": CampaignRow.members,
    "volume": CampaignRow.volume,
    "similarity": CampaignRow.similarity,
    "status": CampaignRow.status,
}
"""Sort keys (:data:`~sigshare.hub.listing.SORTS`) and their columns. ``last_seen`` is the one
nullable column: indicators without it sort below every time."""
_ORDERS = {RecordType.INDICATOR: _INDICATOR_ORDER, RecordType.CAMPAIGN: _CAMPAIGN_ORDER}
_MODELS: dict[RecordType, Any] = {
    RecordType.INDICATOR: SharedIndicatorRow,
    RecordType.CAMPAIGN: CampaignRow,
}
_SCOPES: dict[RecordType, InstrumentedAttribute[str]] = {
    RecordType.INDICATOR: SharedIndicatorRow.kind,
    RecordType.CAMPAIGN: CampaignRow.family,
}
"""What a listing's scope filters on: the indicator kind or the campaign family."""


@dataclass(frozen=True, slots=True)
class RecordState:
    record_type: RecordType
    record_id: str
    status: ReviewStatus
    assignee: str | None
    member_note: str | None = None
    """The note its members receive with their matches; ``None``: none."""


class ReviewRepository:
    """Review state and history of shared indicators and campaigns."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def indicators(self, query: RecordQuery) -> Page[SharedIndicator]:
        """The page of shared indicators ``query`` asks for (tokens included: the caller
        blanks them before anything is shown)."""
        page = self._rows(RecordType.INDICATOR, query)
        return page.with_items(IndicatorRepository(self._session).indicators_of(page.items))

    def campaigns(self, query: RecordQuery) -> Page[Campaign]:
        """The page of active campaigns ``query`` asks for."""
        page = self._rows(RecordType.CAMPAIGN, query)
        return page.with_items(ClusterRepository(self._session).campaigns_of(page.items))

    def _rows(self, record_type: RecordType, query: RecordQuery) -> Page[Any]:
        """The rows of the page ``query`` asks for, of a listing of ``record_type``."""
        if query.record_type is not record_type:
            raise ValueError(f"not a query of {record_type.value}s: {query.record_type}")
        model = _MODELS[record_type]
        conditions: list[ColumnElement[bool]] = []
        if record_type is RecordType.CAMPAIGN:
            conditions.append(CampaignRow.active.is_(True))
        if query.scope:
            conditions.append(_SCOPES[record_type] == query.scope)
        if query.status:
            conditions.append(model.status == query.status.value)
        if query.category:
            # Categories are a JSON list of strings; match one whole element.
            conditions.append(model.categories.contains(f'"{query.category}"'))
        if query.assignee:
            conditions.append(model.assignee == query.assignee)
        return keyset_page(
            self._session,
            select(model).where(*conditions),
            listing=query.listing,
            sort=query.sort,
            column=_ORDERS[record_type][query.sort],
            id_column=model.id,
            descending=query.descending,
            size=query.size,
            cursor=query.cursor,
        )

    def status_counts(self, record_type: RecordType) -> dict[ReviewStatus, int]:
        model = _MODELS[record_type]
        statement = select(model.status, func.count()).group_by(model.status)
        if record_type is RecordType.CAMPAIGN:
            statement = statement.where(CampaignRow.active.is_(True))
        counts = {status: 0 for status in ReviewStatus}
        for status, count in self._session.execute(statement):
            counts[ReviewStatus(status)] = int(count)
        return counts

    def record(self, record_id: str) -> RecordState | None:
        """The review state of the indicator or campaign with this public id."""
        for record_type, model in _MODELS.items():
            row = self._session.execute(
                select(model.status, model.assignee, model.member_note).where(
                    model.public_id == record_id
                )
            ).one_or_none()
            if row is not None:
                return RecordState(record_type, record_id, ReviewStatus(row[0]), row[1], row[2])
        return None

    def _model(self, state: RecordState) -> Any:
        return _MODELS[state.record_type]

    def move(
        self,
        state: RecordState,
        *,
        to: ReviewStatus,
        member_note: str | None = None,
        at: datetime,
    ) -> None:
        """Move the record from the status ``state`` read to ``to``, with ``member_note`` as
        its note for members from now on, compare-and-set: a transition another writer made
        since ``state`` was read is never overwritten (:class:`ConflictError`: read again and
        retry)."""
        model = self._model(state)
        result = self._session.execute(
            update(model)
            .where(model.public_id == state.record_id, model.status == state.status.value)
            .values(status=to.value, member_note=member_note, updated_at=utc(at))
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

    def set_member_note(self, state: RecordState, *, member_note: str, at: datetime) -> None:
        """Give the record ``member_note`` as its note for members; its status is left as it
        is."""
        model = self._model(state)
        self._session.execute(
            update(model)
            .where(model.public_id == state.record_id)
            .values(member_note=member_note, updated_at=utc(at))
        )

    def add_event(
        self,
        state: RecordState,
        *,
        actor: str,
        at: datetime,
        kind: ReviewEventKind,
        from_status: ReviewStatus | None,
        to_status: ReviewStatus | None,
        assignee: str | None,
        note: str | None,
        member_note: str | None = None,
    ) -> ReviewEvent:
        row = ReviewEventRow(
            record_type=state.record_type.value,
            record_id=state.record_id,
            actor=actor,
            at=utc(at),
            kind=kind.value,
            from_status=None if from_status is None else from_status.value,
            to_status=None if to_status is None else to_status.value,
            assignee=assignee,
            note=note,
            member_note=member_note,
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
        kind=ReviewEventKind(row.kind),
        from_status=None if row.from_status is None else ReviewStatus(row.from_status),
        to_status=None if row.to_status is None else ReviewStatus(row.to_status),
        assignee=row.assignee,
        note=row.note,
        member_note=row.member_note,
    )
