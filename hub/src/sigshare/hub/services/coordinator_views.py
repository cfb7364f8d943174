"""Coordinators' reads: the overview, overlap matrices and submission health.

Coordinators see aggregates and opaque records only — never a member's filter bytes, tokens
of unconfirmed items or anything raw. Shared indicators and campaigns are listed by the review
workflow (:mod:`sigshare.hub.services.reviews`), which applies the reveal policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import numpy as np
import numpy.typing as npt
from sqlalchemy.orm import Session

from sigshare.hub.domain import (
    KindParameters,
    MinHashParameters,
    Principal,
    RecordType,
    ReviewStatus,
    Role,
    Submission,
    minhash_family_kind,
)
from sigshare.hub.errors import InvalidArgumentError, NotFoundError
from sigshare.hub.services import campaigns as campaign_service
from sigshare.hub.services import reviews
from sigshare.hub.services.families import prepare
from sigshare.hub.services.parameters import list_parameters
from sigshare.hub.services.principals import list_principals
from sigshare.hub.storage.parameters import ParameterRepository
from sigshare.hub.storage.principals import PrincipalRepository
from sigshare.hub.storage.submissions import SubmissionRepository
from sigshare.sketch.codec import decode_bloom
from sigshare.sketch.estimators import overlap_estimates


def _bloom_kind(session: Session, kind: str) -> KindParameters:
    params = ParameterRepository(session).get_kind(kind)
    if params is None:
        raise NotFoundError("indicator kind", kind)
    return params


@dataclass(frozen=True, slots=True)
class OverlapMatrix:
    kind: str
    members: list[str]
    estimate: npt.NDArray[np.float64]
    stderr: npt.NDArray[np.float64]


def overlap_matrix(session: Session, kind: str, now: datetime) -> OverlapMatrix:
    """Estimated pairwise intersections of the members' current filters of ``kind``."""
    params = _bloom_kind(session, kind)
    submissions = SubmissionRepository(session)
    submissions.lock_family(kind)
    prepare(session, params, now)
    names = {p.id: p.name for p in PrincipalRepository(session).list()}
    active = sorted(submissions.active(kind, params.key_id), key=lambda s: names[s.member_id])
    filters = [decode_bloom(submissions.payload(s.id), params.bloom_params()) for s in active]
    estimate, stderr = overlap_estimates(filters)
    return OverlapMatrix(kind, [names[s.member_id] for s in active], estimate, stderr)


def overlap_matrices(session: Session, kind: str | None, now: datetime) -> list[OverlapMatrix]:
    """The overlap matrix of ``kind``, or of every indicator kind (``None``), by kind."""
    kinds = [kind] if kind else [p.kind for p in list_parameters(session)[0]]
    return [overlap_matrix(session, name, now) for name in kinds]


DEFAULT_FLAG_FACTOR = 5.0
"""A submission is flagged when its declared count or its queried tokens exceed this many times
its predecessor's: the shape of a member claiming values it does not hold to probe for them."""


REPLACEMENT_BURST = 4
"""A submission is flagged when it is at least the member's fourth filter of the kind within
24 hours: a member cycling claimed values through its filter to probe for them replaces it
often, even when each filter looks ordinary (nightly syncs replace it once a day)."""


class SubmissionFlag(StrEnum):
    DECLARED_COUNT_JUMP = "declared_count_jump"
    QUERY_VOLUME_JUMP = "query_volume_jump"
    FREQUENT_REPLACEMENT = "frequent_replacement"


@dataclass(frozen=True, slots=True)
class SubmissionView:
    submission: Submission
    member: str
    params: KindParameters | None
    """The kind's parameters for Bloom submissions (to express health); ``None`` for clusters."""
    flags: tuple[str, ...] = ()
    """Coordinators' view: reasons to look at this submission (:class:`SubmissionFlag`)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmissionSummary:
    """A submission as the coordinators' listing shows it: whose, of what, when, the items it
    declares, the tokens asked about against it and its probing flags (what the Review service's
    ``SubmissionInfo`` carries of it too)."""

    member: str
    kind: str
    """The indicator kind, or ``minhash:<family>``."""
    submission_id: int
    created_at: datetime
    declared_count: int
    tokens_asked: int
    flags: tuple[str, ...]

    @classmethod
    def of(cls, view: SubmissionView) -> SubmissionSummary:
        submission = view.submission
        return cls(
            member=view.member,
            kind=submission.family_kind,
            submission_id=submission.id,
            created_at=submission.created_at,
            declared_count=submission.declared_count,
            tokens_asked=submission.tokens_asked,
            flags=view.flags,
        )


def probing_flags(
    current: Submission,
    previous: Submission | None,
    factor: float = DEFAULT_FLAG_FACTOR,
    *,
    recent: int = 1,
) -> tuple[str, ...]:
    """Flags for ``current`` against the member's previous submission of the same kind;
    ``recent`` counts the member's submissions of the kind in the 24 hours up to ``current``'s
    (``current`` included)."""
    flags = []
    if previous is not None:
        if previous.declared_count and current.declared_count > factor * previous.declared_count:
            flags.append(SubmissionFlag.DECLARED_COUNT_JUMP.value)
        if previous.tokens_asked and current.tokens_asked > factor * previous.tokens_asked:
            flags.append(SubmissionFlag.QUERY_VOLUME_JUMP.value)
    if recent >= REPLACEMENT_BURST:
        flags.append(SubmissionFlag.FREQUENT_REPLACEMENT.value)
    return tuple(flags)


def submissions(
    session: Session, kind: str, *, flag_factor: float = DEFAULT_FLAG_FACTOR
) -> list[SubmissionView]:
    """Every member's active submissions (of ``kind``, or all), without their bytes, with the
    probing flags of Bloom submissions."""
    if flag_factor <= 1:
        raise InvalidArgumentError(f"the flag factor must be above 1, got {flag_factor}")
    parameters = {p.kind: p for p in ParameterRepository(session).list_kinds()}
    names = {p.id: p.name for p in PrincipalRepository(session).list()}
    repository = SubmissionRepository(session)
    views = []
    for family_kind in sorted({*parameters, *_families(session)}):
        if kind and kind not in (family_kind, family_kind.removeprefix("minhash:")):
            continue
        params = parameters.get(family_kind)
        for submission in repository.all_active(family_kind):
            flags = (
                probing_flags(
                    submission,
                    repository.previous_of(submission),
                    flag_factor,
                    recent=repository.count_made_within(submission, timedelta(days=1)),
                )
                if params is not None
                else ()
            )
            views.append(SubmissionView(submission, names[submission.member_id], params, flags))
    return views


def _families(session: Session) -> list[str]:
    return [
        minhash_family_kind(p.family) for p in ParameterRepository(session).list_minhash_families()
    ]


@dataclass(frozen=True, slots=True)
class Overview:
    """The state of the hub at a glance: published parameters, members and their current
    submissions, and how many records each review status holds."""

    kinds: list[KindParameters]
    families: list[MinHashParameters]
    members: list[Principal]
    submissions: list[SubmissionView]
    """Every member's active submissions, with probing flags (:func:`submissions`)."""
    status_counts: dict[RecordType, dict[ReviewStatus, int]]


def overview(session: Session, now: datetime) -> Overview:
    """The overview as of ``now``: campaigns are brought up to date first, so the counts and
    submissions are current."""
    kinds, families = list_parameters(session)
    campaign_service.refresh(session, now)
    return Overview(
        kinds=kinds,
        families=families,
        members=[p for p in list_principals(session) if p.role is Role.MEMBER],
        submissions=submissions(session, ""),
        status_counts=reviews.status_counts(session),
    )
