"""Keeping a kind's or family's derived state in step with its active submissions.

Every operation that changes a family first calls :func:`prepare`, under the family's lock:
submissions past their retention window expire, submissions made under parameters that are no
longer published retire, and a family whose parameters changed starts afresh. Readers first ask
:func:`is_prepared`, which takes no lock, and prepare only when something is due — so answers
run in parallel on every replica while nothing changes. A family's campaigns are brought up to
date by whoever needs them next (:func:`refresh_campaigns`), so a nightly batch of submissions
costs one recomputation, and two hub replicas never compute the same thing at once (the advisory
lock hands the work to one, the other then finds it done).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt
from sqlalchemy.orm import Session

from sigshare.hub.domain import (
    FamilyState,
    KindParameters,
    MinHashParameters,
    SubmissionStatus,
)
from sigshare.hub.engine.campaigns import find_campaigns, inherit_ids
from sigshare.hub.errors import ConflictError
from sigshare.hub.storage.aggregates import FamilyRepository
from sigshare.hub.storage.repositories import SubmissionRepository
from sigshare.hub.storage.results import CampaignDraft, ClusterRepository
from sigshare.sketch.cluster import MIN_SHARED_SHINGLES
from sigshare.sketch.codec import decode_signatures

Parameters = KindParameters | MinHashParameters


def _identity(params: Parameters) -> tuple[str, str, bytes, int | None]:
    if isinstance(params, KindParameters):
        return params.kind, params.key_id, params.bloom_params().digest(), params.m
    return params.family_kind, params.key_id, params.minhash_params().digest(), None


def is_prepared(session: Session, params: Parameters, now: datetime) -> bool:
    """Whether :func:`prepare` would change nothing (no lock taken: a hint for readers, who
    prepare under the lock when it says no)."""
    family_kind, key_id, digest, _ = _identity(params)
    state = FamilyRepository(session).get(family_kind)
    if state is None or state.params_digest != digest or state.key_id != key_id:
        return False
    return not SubmissionRepository(session).any_due(family_kind, key_id, digest, now)


def prepare(session: Session, params: Parameters, now: datetime) -> FamilyState:
    """Expire and retire what is due, reset the family if its parameters changed.

    The caller holds the family's exclusive lock (``SubmissionRepository.lock_family``).
    """
    family_kind, key_id, digest, m = _identity(params)
    submissions = SubmissionRepository(session)
    families = FamilyRepository(session)
    state = families.get(family_kind)
    if state is None or state.params_digest != digest or state.key_id != key_id:
        state = families.reset(family_kind, key_id=key_id, params_digest=digest, m=m, at=now)
    due = submissions.due(family_kind, key_id, digest, now)
    for submission in due:
        submissions.end(submission.id, SubmissionStatus.EXPIRED, now)
    if due:
        state = families.record_change(family_kind, at=now)
    return state


def refresh_campaigns(session: Session, params: MinHashParameters, now: datetime) -> None:
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
