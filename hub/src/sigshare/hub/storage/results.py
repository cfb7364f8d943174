"""What the hub derives from submissions: confirmations and shared indicators, shared prompt
clusters and campaigns. All SQL of these tables lives here.

Lists of tokens or ids go to the database in chunks of :data:`_IN_CHUNK`, below every backend's
limit on bound parameters.
"""

from __future__ import annotations

import json
import secrets
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from sigshare.hub.domain import (
    Campaign,
    CampaignLink,
    ClusterInfo,
    ReviewStatus,
    SharedIndicator,
    SubmissionStatus,
    utc,
)
from sigshare.hub.storage.models import (
    CampaignClusterRow,
    CampaignRow,
    ClusterRow,
    ConfirmationRow,
    PrincipalRow,
    SharedIndicatorRow,
    SubmissionRow,
)

_IN_CHUNK = 500
MAX_PAGE = 1000
_T = TypeVar("_T")


def _chunks(items: Sequence[_T], size: int = _IN_CHUNK) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _dialect_insert(session: Session) -> Any:
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def _new_public_id() -> str:
    """Opaque record ids: random, so they say nothing about the token or cluster behind them."""
    return secrets.token_hex(16)


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
        if self._session.get_bind().dialect.name == "postgresql":
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
        statement = _dialect_insert(self._session)(ConfirmationRow)
        statement = statement.on_conflict_do_update(
            index_elements=["kind", "key_id", "token", "member_id"],
            set_={
                name: statement.excluded[name]
                for name in ("category", "first_seen", "last_seen", "confirmed_at")
            },
        )
        for chunk in _chunks(rows):
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
        for chunk in _chunks(sorted(set(tokens))):
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
            for chunk in _chunks(sorted(set(tokens)))
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
                        public_id=_new_public_id(),
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

    def page(
        self, *, kind: str | None = None, after_id: int = 0, limit: int = 100
    ) -> tuple[list[SharedIndicator], int | None]:
        """Coordinators' listing in creation order; the cursor of the next page, if any."""
        statement = (
            select(SharedIndicatorRow)
            .where(SharedIndicatorRow.id > after_id)
            .order_by(SharedIndicatorRow.id)
            .limit(min(max(limit, 1), MAX_PAGE) + 1)
        )
        if kind:
            statement = statement.where(SharedIndicatorRow.kind == kind)
        rows = list(self._session.scalars(statement))
        more = len(rows) > min(max(limit, 1), MAX_PAGE)
        rows = rows[: min(max(limit, 1), MAX_PAGE)]
        return self.indicators_of(rows), (rows[-1].id if more and rows else None)

    def indicators_of(self, rows: Sequence[SharedIndicatorRow]) -> list[SharedIndicator]:
        names: dict[tuple[str, str, bytes], list[str]] = defaultdict(list)
        by_key: dict[tuple[str, str], list[bytes]] = defaultdict(list)
        for row in rows:
            by_key[(row.kind, row.key_id)].append(row.token)
        for (kind, key_id), tokens in by_key.items():
            for chunk in _chunks(tokens):
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
            )
            for row in rows
        ]


@dataclass(frozen=True, slots=True, kw_only=True)
class ActiveCluster:
    """A cluster of an active submission, with where its signature lives."""

    row_id: int
    submission_id: int
    member_id: int
    row_index: int
    info: ClusterInfo


@dataclass(frozen=True, slots=True, kw_only=True)
class CampaignDraft:
    """A component found by matching, before it is reconciled with stored campaigns."""

    members: int
    similarity: float
    volume: int
    categories: tuple[str, ...]
    clusters: tuple[tuple[int, str, float], ...]
    """``(member id, cluster id, best cross-member similarity)`` of every cluster in it."""
    signature: npt.NDArray[np.uint32]
    """Representative signature: that of the component's best-connected cluster."""


class ClusterRepository:
    """Shared prompt clusters and the campaigns that connect them across members."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def add(self, submission_id: int, clusters: Sequence[ClusterInfo]) -> None:
        rows = [
            {
                "submission_id": submission_id,
                "row_index": index,
                "cluster_id": c.cluster_id,
                "volume": c.volume,
                "category": c.category,
                "first_seen": None if c.first_seen is None else utc(c.first_seen),
                "last_seen": None if c.last_seen is None else utc(c.last_seen),
                "core_size": c.core_size,
            }
            for index, c in enumerate(clusters)
        ]
        for chunk in _chunks(rows, 5000):
            self._session.execute(insert(ClusterRow), list(chunk))

    def active(self, family_kind: str, key_id: str) -> list[ActiveCluster]:
        """Clusters of the family's active submissions in one key epoch, by submission and row."""
        rows = self._session.execute(
            select(ClusterRow, SubmissionRow.member_id)
            .join(SubmissionRow, SubmissionRow.id == ClusterRow.submission_id)
            .where(
                SubmissionRow.family_kind == family_kind,
                SubmissionRow.key_id == key_id,
                SubmissionRow.status == SubmissionStatus.ACTIVE.value,
            )
            .order_by(ClusterRow.submission_id, ClusterRow.row_index)
        )
        return [
            ActiveCluster(
                row_id=row.id,
                submission_id=row.submission_id,
                member_id=member_id,
                row_index=row.row_index,
                info=ClusterInfo(
                    cluster_id=row.cluster_id,
                    volume=row.volume,
                    category=row.category,
                    first_seen=row.first_seen,
                    last_seen=row.last_seen,
                    core_size=row.core_size,
                ),
            )
            for row, member_id in rows
        ]

    @staticmethod
    def _inheritable(family: str, since: datetime) -> Any:
        """The family's active campaigns and those that went inactive at ``since`` or later."""
        return (CampaignRow.family == family) & (
            CampaignRow.active.is_(True) | (CampaignRow.updated_at >= utc(since))
        )

    def campaign_memberships(self, family: str, since: datetime) -> dict[tuple[int, str], int]:
        """``(member id, cluster id)`` → campaign id, over the family's active campaigns and
        those inactive since ``since`` (their last memberships). A pair in several campaigns
        maps to an active one, else to the one that was active last."""
        rows = self._session.execute(
            select(
                CampaignClusterRow.member_id,
                CampaignClusterRow.cluster_id,
                CampaignClusterRow.campaign_id,
            )
            .join(CampaignRow, CampaignRow.id == CampaignClusterRow.campaign_id)
            .where(self._inheritable(family, since))
            .order_by(CampaignRow.active, CampaignRow.updated_at, CampaignRow.id)
        )
        # Ascending (inactive first, oldest first): the preferred campaign is written last.
        return {(member_id, cluster_id): campaign_id for member_id, cluster_id, campaign_id in rows}

    def campaign_signatures(
        self, family: str, since: datetime
    ) -> dict[int, npt.NDArray[np.uint32]]:
        """Campaign id → representative signature, over the family's active campaigns and those
        inactive since ``since``."""
        return {
            campaign_id: np.frombuffer(signature, dtype="<u4").astype(np.uint32)
            for campaign_id, signature in self._session.execute(
                select(CampaignRow.id, CampaignRow.signature).where(
                    self._inheritable(family, since)
                )
            )
        }

    def replace_campaigns(
        self,
        family: str,
        drafts: Sequence[CampaignDraft],
        inherited: Mapping[int, int],
        at: datetime,
    ) -> None:
        """Store the family's current components as its active campaigns.

        ``inherited`` maps a draft's index to the stored campaign (active, or inactive and
        revived) whose id and review status it keeps; other drafts become new campaigns, and
        stored active campaigns nobody inherits become inactive, keeping their last memberships
        (so they can be recognised again, e.g. after members resubmit under new parameters).
        Inherited campaigns' memberships are rewritten.
        """
        moment = utc(at)
        stored = set(
            self._session.scalars(
                select(CampaignRow.id).where(
                    CampaignRow.family == family, CampaignRow.active.is_(True)
                )
            )
        )
        stale = stored - set(inherited.values())
        for chunk in _chunks(sorted(stale)):
            self._session.execute(
                update(CampaignRow)
                .where(CampaignRow.id.in_(chunk))
                .values(active=False, updated_at=moment)
            )
        for chunk in _chunks(sorted(set(inherited.values()))):
            self._session.execute(
                delete(CampaignClusterRow).where(CampaignClusterRow.campaign_id.in_(chunk))
            )
        memberships: list[dict[str, Any]] = []
        for index, draft in enumerate(drafts):
            values = {
                "members": draft.members,
                "similarity": draft.similarity,
                "volume": draft.volume,
                "categories": json.dumps(sorted(draft.categories)),
                "signature": np.ascontiguousarray(draft.signature, dtype="<u4").tobytes(),
                "active": True,
                "updated_at": moment,
            }
            campaign_id = inherited.get(index)
            if campaign_id is None:
                row = CampaignRow(
                    public_id=_new_public_id(),
                    family=family,
                    status=ReviewStatus.NEW.value,
                    created_at=moment,
                    **values,
                )
                self._session.add(row)
                self._session.flush()
                campaign_id = row.id
            else:
                self._session.execute(
                    update(CampaignRow).where(CampaignRow.id == campaign_id).values(**values)
                )
            memberships += [
                {
                    "campaign_id": campaign_id,
                    "member_id": member_id,
                    "cluster_id": cluster_id,
                    "similarity": similarity,
                }
                for member_id, cluster_id, similarity in draft.clusters
            ]
        for batch in _chunks(memberships, 5000):
            self._session.execute(insert(CampaignClusterRow), list(batch))

    def links_for_member(self, member_id: int, family: str | None = None) -> list[CampaignLink]:
        """The member's own clusters that belong to an active campaign."""
        statement = (
            select(
                CampaignClusterRow.cluster_id,
                CampaignRow.id,
                CampaignRow.public_id,
                CampaignClusterRow.similarity,
            )
            .join(CampaignRow, CampaignRow.id == CampaignClusterRow.campaign_id)
            .where(CampaignClusterRow.member_id == member_id, CampaignRow.active.is_(True))
            .order_by(CampaignRow.id, CampaignClusterRow.cluster_id)
        )
        if family:
            statement = statement.where(CampaignRow.family == family)
        rows = list(self._session.execute(statement))
        names = self._member_names({row[1] for row in rows})
        links = []
        for cluster_id, campaign_id, public_id, similarity in rows:
            others = [name for member, name in names[campaign_id] if member != member_id]
            links.append(
                CampaignLink(
                    cluster_id=cluster_id,
                    campaign_id=public_id,
                    similarity=similarity,
                    other_member_count=len(others),
                    other_members=tuple(others),
                )
            )
        return links

    def page(
        self, *, family: str | None = None, after_id: int = 0, limit: int = 100
    ) -> tuple[list[Campaign], int | None]:
        """Coordinators' listing of active campaigns; the cursor of the next page, if any."""
        size = min(max(limit, 1), MAX_PAGE)
        statement = (
            select(CampaignRow)
            .where(CampaignRow.id > after_id, CampaignRow.active.is_(True))
            .order_by(CampaignRow.id)
            .limit(size + 1)
        )
        if family:
            statement = statement.where(CampaignRow.family == family)
        rows = list(self._session.scalars(statement))
        more = len(rows) > size
        rows = rows[:size]
        return self.campaigns_of(rows), (rows[-1].id if more and rows else None)

    def campaigns_of(self, rows: Sequence[CampaignRow]) -> list[Campaign]:
        """Domain campaigns, with their members' names, for ``rows``."""
        names = self._member_names({row.id for row in rows})
        return [
            Campaign(
                id=row.public_id,
                family=row.family,
                members=tuple(name for _, name in names[row.id]),
                similarity=row.similarity,
                volume=row.volume,
                categories=tuple(json.loads(row.categories)),
                status=ReviewStatus(row.status),
                active=row.active,
                created_at=row.created_at,
                updated_at=row.updated_at,
                assignee=row.assignee,
            )
            for row in rows
        ]

    def _member_names(self, campaign_ids: Iterable[int]) -> dict[int, list[tuple[int, str]]]:
        """Distinct ``(member id, name)`` of each campaign, by name."""
        found: dict[int, set[tuple[int, str]]] = defaultdict(set)
        for chunk in _chunks(sorted(campaign_ids)):
            for campaign_id, member_id, name in self._session.execute(
                select(CampaignClusterRow.campaign_id, PrincipalRow.id, PrincipalRow.name)
                .join(PrincipalRow, PrincipalRow.id == CampaignClusterRow.member_id)
                .where(CampaignClusterRow.campaign_id.in_(chunk))
            ):
                found[campaign_id].add((member_id, name))
        return defaultdict(
            list, {key: sorted(value, key=lambda item: item[1]) for key, value in found.items()}
        )
