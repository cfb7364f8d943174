"""Shared prompt clusters of MinHash submissions and the campaigns that connect them across
members: all SQL of the ``clusters``, ``campaigns`` and ``campaign_clusters`` tables.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from sigshare.hub.domain import (
    Campaign,
    CampaignLink,
    ReviewStatus,
    SubmissionStatus,
    minhash_family_kind,
    utc,
)
from sigshare.hub.storage._sql import chunks, new_public_id
from sigshare.hub.storage.models import (
    CampaignClusterRow,
    CampaignRow,
    ClusterRow,
    PrincipalRow,
    SubmissionRow,
)
from sigshare.sketch.cluster import ClusterInfo


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
        for chunk in chunks(rows, 5000):
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
        for chunk in chunks(sorted(stale)):
            self._session.execute(
                update(CampaignRow)
                .where(CampaignRow.id.in_(chunk))
                .values(active=False, updated_at=moment)
            )
        for chunk in chunks(sorted(set(inherited.values()))):
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
                    public_id=new_public_id(),
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
        for batch in chunks(memberships, 5000):
            self._session.execute(insert(CampaignClusterRow), list(batch))

    def links_for_member(self, member_id: int, family: str | None = None) -> list[CampaignLink]:
        """The member's own clusters that belong to an active campaign, with the campaign's
        review status and note for members."""
        statement = (
            select(
                CampaignClusterRow.cluster_id,
                CampaignRow.id,
                CampaignRow.public_id,
                CampaignClusterRow.similarity,
                CampaignRow.status,
                CampaignRow.member_note,
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
        for cluster_id, campaign_id, public_id, similarity, status, member_note in rows:
            others = [name for member, name in names[campaign_id] if member != member_id]
            links.append(
                CampaignLink(
                    cluster_id=cluster_id,
                    campaign_id=public_id,
                    similarity=similarity,
                    other_member_count=len(others),
                    other_members=tuple(others),
                    status=ReviewStatus(status),
                    member_note=member_note,
                )
            )
        return links

    def campaign(self, public_id: str) -> Campaign | None:
        """The campaign, active or not (an inactive one keeps its review history)."""
        row = self._session.scalar(select(CampaignRow).where(CampaignRow.public_id == public_id))
        return None if row is None else self.campaigns_of([row])[0]

    def campaigns_of(self, rows: Sequence[CampaignRow]) -> list[Campaign]:
        """Domain campaigns, with their members' names and dates, for ``rows``."""
        names = self._member_names({row.id for row in rows})
        seen = self._seen(rows)
        campaigns = []
        for row in rows:
            first_seen, last_seen = seen.get(row.id, (None, None))
            campaigns.append(
                Campaign(
                    id=row.public_id,
                    family=row.family,
                    member_count=row.members,
                    members=tuple(name for _, name in names[row.id]),
                    similarity=row.similarity,
                    volume=row.volume,
                    categories=tuple(json.loads(row.categories)),
                    first_seen=first_seen,
                    last_seen=last_seen,
                    status=ReviewStatus(row.status),
                    active=row.active,
                    created_at=row.created_at,
                    updated_at=row.updated_at,
                    assignee=row.assignee,
                    member_note=row.member_note,
                )
            )
        return campaigns

    def _seen(
        self, rows: Sequence[CampaignRow]
    ) -> dict[int, tuple[datetime | None, datetime | None]]:
        """Campaign id → the earliest first seen and the latest last seen of its clusters, as
        its members' active submissions of its family state them (derived on every read, so
        they follow the members' latest submissions; missing: no cluster stated either)."""
        by_family: dict[str, list[int]] = defaultdict(list)
        for row in rows:
            by_family[row.family].append(row.id)
        seen: dict[int, tuple[datetime | None, datetime | None]] = {}
        for family, campaign_ids in by_family.items():
            for chunk in chunks(sorted(campaign_ids)):
                statement = (
                    select(
                        CampaignClusterRow.campaign_id,
                        func.min(ClusterRow.first_seen),
                        func.max(ClusterRow.last_seen),
                    )
                    .join(
                        SubmissionRow,
                        (SubmissionRow.member_id == CampaignClusterRow.member_id)
                        & (SubmissionRow.family_kind == minhash_family_kind(family))
                        & (SubmissionRow.status == SubmissionStatus.ACTIVE.value),
                    )
                    .join(
                        ClusterRow,
                        (ClusterRow.submission_id == SubmissionRow.id)
                        & (ClusterRow.cluster_id == CampaignClusterRow.cluster_id),
                    )
                    .where(CampaignClusterRow.campaign_id.in_(chunk))
                    .group_by(CampaignClusterRow.campaign_id)
                )
                for campaign_id, first_seen, last_seen in self._session.execute(statement):
                    seen[campaign_id] = (first_seen, last_seen)
        return seen

    def _member_names(self, campaign_ids: Iterable[int]) -> dict[int, list[tuple[int, str]]]:
        """Distinct ``(member id, name)`` of each campaign, by name."""
        found: dict[int, set[tuple[int, str]]] = defaultdict(set)
        for chunk in chunks(sorted(campaign_ids)):
            for campaign_id, member_id, name in self._session.execute(
                select(CampaignClusterRow.campaign_id, PrincipalRow.id, PrincipalRow.name)
                .join(PrincipalRow, PrincipalRow.id == CampaignClusterRow.member_id)
                .where(CampaignClusterRow.campaign_id.in_(chunk))
            ):
                found[campaign_id].add((member_id, name))
        return defaultdict(
            list, {key: sorted(value, key=lambda item: item[1]) for key, value in found.items()}
        )
