"""What a member may read and do with results: its resolution vector, confirmations, matches,
and the status of its own submissions. Never another member's sketch.

Reads of results are audited (who read what, when) in their own short transaction before the
read, so the audit lock is never held while a large vector is computed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

import numpy as np
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from sigshare.hub.domain import (
    CampaignLink,
    KindParameters,
    MinHashParameters,
    Principal,
    SharedIndicator,
    Submission,
    minhash_family_kind,
)
from sigshare.hub.errors import InvalidArgumentError, PreconditionError
from sigshare.hub.services.families import bloom_of, fold_counts, prepare, refresh_campaigns
from sigshare.hub.storage.database import session_scope
from sigshare.hub.storage.repositories import (
    AuditRepository,
    ParameterRepository,
    SubmissionRepository,
)
from sigshare.hub.storage.results import ClusterRepository, IndicatorRepository, TokenConfirmation
from sigshare.sketch.aggregate import resolution_for
from sigshare.sketch.bloom import bit_positions
from sigshare.sketch.prf import TOKEN_BYTES, tokens_from_bytes
from sigshare.sketch.resolution import choose_encoding, encode_resolution

MAX_CONFIRM_TOKENS = 100_000
"""Per request; the client batches larger confirmations."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolutionResult:
    params: KindParameters
    members: int
    content: bytes
    content_sha256: bytes
    encoding: str
    computed_at: datetime


def _kind(session: Session, kind: str, key_id: str | None = None) -> KindParameters:
    params = ParameterRepository(session).get_kind(kind)
    if params is None:
        raise PreconditionError(f"indicator kind {kind!r} is not enabled on this hub")
    if key_id is not None and key_id != params.key_id:
        raise PreconditionError(
            f"{kind}: key id {key_id!r} is not the forum's current key id {params.key_id!r}"
        )
    return params


def audit_read(engine: Engine, member: Principal, action: str, target: str, now: datetime) -> None:
    with session_scope(engine) as session:
        AuditRepository(session).append(member.name, action, target, {}, at=now)


def _own_submission(session: Session, member: Principal, params: KindParameters) -> Submission:
    own = SubmissionRepository(session).active_of(member.id, params.kind)
    if own is None or own.key_id != params.key_id:
        raise PreconditionError(
            f"submit a filter of kind {params.kind} before asking for its resolution: members "
            "learn only about items they hold themselves"
        )
    return own


def resolution(
    session: Session, member: Principal, kind: str, key_id: str, now: datetime
) -> ResolutionResult:
    """``R = C − B_member`` with counts below ``quorum − 1`` zeroed, encoded for the wire."""
    params = _kind(session, kind, key_id)
    SubmissionRepository(session).lock_family(params.kind)
    prepare(session, params, now)
    folded = fold_counts(session, params, now)
    own = _own_submission(session, member, params)
    vector = resolution_for(folded.counts, bloom_of(session, own, params), params.quorum)
    encoding = choose_encoding(vector)
    content = encode_resolution(vector, encoding)
    return ResolutionResult(
        params=params,
        members=folded.state.members,
        content=content,
        content_sha256=hashlib.sha256(content).digest(),
        encoding=encoding,
        computed_at=now,
    )


@dataclass(frozen=True, slots=True)
class ConfirmOutcome:
    accepted: int
    shared: int
    not_resolved: int


def confirm(
    session: Session,
    member: Principal,
    *,
    kind: str,
    key_id: str,
    confirmations: Sequence[TokenConfirmation],
    now: datetime,
) -> ConfirmOutcome:
    """Record the member's confirmed tokens; those held by ≥ quorum members become shared.

    A token is accepted only if the member's own active filter holds it and quorum − 1 other
    members' filters do too, exactly what the member's resolution showed: a member cannot
    confirm (and so probe for) an item it never submitted.
    """
    if len(confirmations) > MAX_CONFIRM_TOKENS:
        raise InvalidArgumentError(
            f"{len(confirmations)} tokens in one request; send at most {MAX_CONFIRM_TOKENS}"
        )
    for item in confirmations:
        if len(item.token) != TOKEN_BYTES:
            raise InvalidArgumentError(f"tokens are {TOKEN_BYTES} bytes, got {len(item.token)}")
    params = _kind(session, kind, key_id)
    SubmissionRepository(session).lock_family(params.kind)
    prepare(session, params, now)
    folded = fold_counts(session, params, now)
    own_bits = bloom_of(session, _own_submission(session, member, params), params)
    accepted = list(confirmations)
    if accepted:
        tokens = tokens_from_bytes(c.token for c in accepted)
        positions = bit_positions(tokens, params.m, params.k)
        own = np.unpackbits(own_bits, bitorder="little")
        held = own[positions].all(axis=0)
        others = (folded.counts[positions].astype(np.int16) - own[positions]).min(axis=0)
        resolved = held & (others >= params.quorum - 1)
        accepted = [c for c, ok in zip(accepted, resolved.tolist(), strict=True) if ok]
    indicators = IndicatorRepository(session)
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
        {"accepted": len(accepted), "refused": len(confirmations) - len(accepted)},
        at=now,
    )
    return ConfirmOutcome(
        accepted=len(accepted), shared=shared, not_resolved=len(confirmations) - len(accepted)
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
    indicators = [
        _indicator_view(indicator, kinds.get(indicator.kind), member)
        for indicator in IndicatorRepository(session).for_member(member.id, kind or None)
    ]
    campaigns: list[CampaignLink] = []
    for family, params in sorted(families.items()):
        if kind and kind != family:
            continue
        _refresh(session, params, now)
        links = ClusterRepository(session).links_for_member(member.id, family)
        campaigns += [_link_view(link, params) for link in links]
    return MemberMatches(indicators, campaigns)


def _refresh(session: Session, params: MinHashParameters, now: datetime) -> None:
    SubmissionRepository(session).lock_family(minhash_family_kind(params.family))
    prepare(session, params, now)
    refresh_campaigns(session, params, now)


def _indicator_view(
    indicator: SharedIndicator, params: KindParameters | None, member: Principal
) -> SharedIndicator:
    reveal = params is not None and params.reveal_members
    names = tuple(n for n in indicator.reporter_names if n != member.name) if reveal else ()
    return replace(indicator, reporter_names=names)


def _link_view(link: CampaignLink, params: MinHashParameters) -> CampaignLink:
    return link if params.reveal_members else replace(link, other_members=())


def status(session: Session, member: Principal) -> list[Submission]:
    """The member's own active submissions."""
    return SubmissionRepository(session).of_member(member.id)
