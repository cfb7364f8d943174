"""Campaigns: what members' prompt clusters add up to, kept in step with the submissions.

A family's campaigns are brought up to date by whoever needs them next (:func:`refresh`), so a
nightly batch of submissions costs one recomputation, and two hub replicas never compute the
same thing at once: each family is refreshed under its advisory lock, which hands the work to
one replica; the other then finds it done.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt
from sqlalchemy.orm import Session

from sigshare.hub.domain import MinHashParameters, minhash_family_kind
from sigshare.hub.errors import ConflictError
from sigshare.hub.matching.campaigns import find_campaigns, inherit_ids
from sigshare.hub.services.families import prepare
from sigshare.hub.storage.aggregates import FamilyRepository
from sigshare.hub.storage.campaigns import CampaignDraft, ClusterRepository
from sigshare.hub.storage.parameters import ParameterRepository
from sigshare.hub.storage.submissions import SubmissionRepository
from sigshare.sketch.cluster import MIN_SHARED_SHINGLES
from sigshare.sketch.codec import decode_signatures


def refresh(session: Session, now: datetime, family: str | None = None) -> None:
    """Bring the campaigns of ``family`` (``None``: every MinHash family) up to date: under
    each family's lock, what is due expires, then its campaigns are recomputed if its
    submissions changed (cheap when nothing did)."""
    for params in ParameterRepository(session).list_minhash_families():
        if family is None or params.family == family:
            refresh_family(session, params, now)


def refresh_family(session: Session, params: MinHashParameters, now: datetime) -> None:
    """:func:`refresh` of one family whose parameters the caller has read."""
    SubmissionRepository(session).lock_family(minhash_family_kind(params.family))
    prepare(session, params, now)
    _recompute(session, params, now)


def _recompute(session: Session, params: MinHashParameters, now: datetime) -> None:
    """Recompute the family's campaigns if its active submissions changed since the last time.

    The caller holds the family's exclusive lock and has called :func:`prepare`.
    """
    families = FamilyRepository(session)
    state = families.get(params.family_kind)
    assert state is not None, "prepare() first"
    if state.derived_version == state.version:
        return
    submissions = SubmissionRepository(session)
    clusters = ClusterRepository(session)
    active = clusters.active(params.family_kind, params.key_id)
    blocks: list[npt.NDArray[np.uint32]] = []
    for submission in submissions.active(params.family_kind, params.key_id):
        blocks.append(decode_signatures(submissions.payload(submission.id)).values)
    if blocks:
        signatures = np.concatenate(blocks)
    else:
        signatures = np.zeros((0, params.num_perm), dtype=np.uint32)
    if len(signatures) != len(active):
        raise ConflictError(f"{params.family_kind!r}: signatures and clusters disagree")
    owners = np.fromiter((c.member_id for c in active), dtype=np.int64, count=len(active))
    sizes = None
    if params.core_rules == 2:
        sizes = np.fromiter((c.info.core_size for c in active), dtype=np.int64, count=len(active))
    components = find_campaigns(
        signatures,
        owners,
        params.banding(),
        params.threshold,
        params.quorum,
        core_sizes=sizes,
        min_shared=MIN_SHARED_SHINGLES,
    )
    drafts = []
    for component in components:
        nodes = [active[int(i)] for i in component.nodes]
        central = int(component.nodes[int(np.argmax(component.best_similarity))])
        drafts.append(
            CampaignDraft(
                signature=signatures[central],
                members=component.members,
                similarity=component.min_edge_similarity,
                volume=sum(c.info.volume for c in nodes),
                categories=tuple(sorted({c.info.category for c in nodes if c.info.category})),
                clusters=tuple(
                    (c.member_id, c.info.cluster_id, float(s))
                    for c, s in zip(nodes, component.best_similarity, strict=True)
                ),
            )
        )
    # Campaigns that went inactive within the retention window can be recognised again: after
    # a parameter change every submission retires and members resubmit the next night.
    since = now - timedelta(days=params.retention_days)
    inherited = inherit_ids(
        [[(member, cluster) for member, cluster, _ in draft.clusters] for draft in drafts],
        [draft.signature for draft in drafts],
        clusters.campaign_memberships(params.family, since),
        clusters.campaign_signatures(params.family, since),
        banding=params.banding(),
        threshold=params.threshold,
    )
    clusters.replace_campaigns(params.family, drafts, inherited, now)
    families.mark_derived(params.family_kind, state.version)
