"""Reads the coordinators' web console needs beyond the review listings: one shared indicator or
campaign by its public id, and counts and cursors for paging through a filtered audit log.

Read-only; the review records come back as the same domain types the listings return (tokens
included — the caller blanks them before anything is shown).
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from sigshare.hub.domain import Campaign, SharedIndicator
from sigshare.hub.storage.models import AuditLogRow, CampaignRow, SharedIndicatorRow
from sigshare.hub.storage.results import ClusterRepository, IndicatorRepository


def _audit_filters(actor: str | None, action: str | None) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if actor is not None:
        conditions.append(AuditLogRow.actor == actor)
    if action is not None:
        conditions.append(AuditLogRow.action == action)
    return conditions


class ConsoleReadRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def indicator(self, public_id: str) -> SharedIndicator | None:
        row = self._session.scalar(
            select(SharedIndicatorRow).where(SharedIndicatorRow.public_id == public_id)
        )
        return None if row is None else IndicatorRepository(self._session).indicators_of([row])[0]

    def campaign(self, public_id: str) -> Campaign | None:
        """The campaign, active or not (an inactive one keeps its review history)."""
        row = self._session.scalar(select(CampaignRow).where(CampaignRow.public_id == public_id))
        return None if row is None else ClusterRepository(self._session).campaigns_of([row])[0]

    def audit_count(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        above_id: int | None = None,
        below_id: int | None = None,
    ) -> int:
        """Entries matching the filters, optionally only those with ids above or below one."""
        conditions = _audit_filters(actor, action)
        if above_id is not None:
            conditions.append(AuditLogRow.id > above_id)
        if below_id is not None:
            conditions.append(AuditLogRow.id < below_id)
        total = self._session.scalar(
            select(func.count()).select_from(AuditLogRow).where(*conditions)
        )
        return int(total or 0)

    def audit_ids_above(
        self, above_id: int, limit: int, *, actor: str | None = None, action: str | None = None
    ) -> list[int]:
        """The ids of the ``limit`` matching entries just above ``above_id``, oldest first: what
        the page of newer entries holds when paging back towards the newest."""
        return list(
            self._session.scalars(
                select(AuditLogRow.id)
                .where(AuditLogRow.id > above_id, *_audit_filters(actor, action))
                .order_by(AuditLogRow.id)
                .limit(limit)
            )
        )
