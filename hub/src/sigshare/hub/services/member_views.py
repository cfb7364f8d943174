"""What a member may read and do with results: confirmations, matches, and the status of its
own submissions. Never another member's sketch. (Resolution: :mod:`.resolution`.)

Reads of results are audited (who read what, when) in their own short transaction before the
read, so the audit lock is never held while results are computed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from sigshare.hub.domain import (
    CampaignLink,
    Principal,
    SharedIndicator,
    Submission,
)
from sigshare.hub.errors import InvalidArgumentError, PreconditionError
from sigshare.hub.matching.membership import IndexCache
from sigshare.hub.services import campaigns as campaign_service
from sigshare.hub.services.resolution import confirmable, kind_parameters, tokens_from_buffer
from sigshare.hub.services.reveal import RevealPolicy
from sigshare.hub.storage.audit import AuditRepository
from sigshare.hub.storage.campaigns import ClusterRepository
from sigshare.hub.storage.indicators import IndicatorRepository, TokenConfirmation
from sigshare.hub.storage.parameters import ParameterRepository
from sigshare.hub.storage.submissions import SubmissionRepository
from sigshare.sketch.prf import TOKEN_BYTES

MAX_CONFIRM_TOKENS = 100_000
"""Per request; the client batches larger confirmations."""


@dataclass(frozen=True, slots=True)
class ConfirmOutcome:
    accepted: int
    shared: int
    not_resolved: int
    over_budget: int


def confirm(
    session: Session,
    cache: IndexCache,
    member: Principal,
    *,
    kind: str,
    key_id: str,
    confirmations: Sequence[TokenConfirmation],
    now: datetime,
) -> ConfirmOutcome:
    """Record the member's confirmed tokens; those held by ≥ quorum members become shared.

    A token is accepted only if the member's own active filter holds it and quorum − 1 other
    members' own filters do too — the test :func:`.resolution.resolve` answers — within the
    member's query budgets: a member cannot confirm (and so probe for) a value it never
    submitted.
    """
    if len(confirmations) > MAX_CONFIRM_TOKENS:
        raise InvalidArgumentError(
            f"{len(confirmations)} tokens in one request; send at most {MAX_CONFIRM_TOKENS}"
        )
    for item in confirmations:
        if len(item.token) != TOKEN_BYTES:
            raise InvalidArgumentError(f"tokens are {TOKEN_BYTES} bytes, got {len(item.token)}")
    params = kind_parameters(session, kind, key_id)
    tokens = tokens_from_buffer(b"".join(c.token for c in confirmations))
    ok, over_budget = confirmable(session, cache, member, params, tokens=tokens, now=now)
    accepted = [c for c, keep in zip(confirmations, ok.tolist(), strict=True) if keep]
    indicators = IndicatorRepository(session)
    indicators.lock_kind(params.kind)  # answers above took no lock; recording them does
    indicators.confirm(
        kind=params.kind, key_id=params.key_id, member_id=member.id, confirmations=accepted, at=now
    )
    shared = indicators.refresh_shared(
        kind=params.kind,
        key_id=params.key_id,
        tokens=[c.token for c in accepted],
        quorum=params.quorum,
        at=now,
    )
    AuditRepository(session).append(
        member.name,
        "indicator.confirm",
        params.kind,
        {
            "accepted": len(accepted),
            "refused": len(confirmations) - len(accepted),
            "over_budget": over_budget,
        },
        at=now,
    )
    return ConfirmOutcome(
        accepted=len(accepted),
        shared=shared,
        not_resolved=len(confirmations) - len(accepted),
        over_budget=over_budget,
    )


@dataclass(frozen=True, slots=True)
class MemberMatches:
    indicators: list[SharedIndicator]
    campaigns: list[CampaignLink]


def matches(session: Session, member: Principal, kind: str, now: datetime) -> MemberMatches:
    """The member's shared indicators and its clusters' campaigns (``kind`` empty: all).

    Names of other members appear only where the forum's policy for that kind or family
    reveals them.
    """
    parameters = ParameterRepository(session)
    kinds = {p.kind: p for p in parameters.list_kinds()}
    families = {p.family: p for p in parameters.list_minhash_families()}
    if kind and kind not in kinds and kind not in families:
        raise PreconditionError(f"{kind!r} is neither an enabled kind nor a MinHash family")
    reveal = RevealPolicy.current(session)
    indicators = [
        reveal.indicator(indicator, viewer=member.name)
        for indicator in IndicatorRepository(session).for_member(member.id, kind or None)
    ]
    campaigns: list[CampaignLink] = []
    for family, params in sorted(families.items()):
        if kind and kind != family:
            continue
        campaign_service.refresh_family(session, params, now)
        links = ClusterRepository(session).links_for_member(member.id, family)
        campaigns += [reveal.campaign_link(link, family) for link in links]
    return MemberMatches(indicators, campaigns)


def status(session: Session, member: Principal) -> list[Submission]:
    """The member's own active submissions."""
    return SubmissionRepository(session).of_member(member.id)
