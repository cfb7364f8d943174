"""Resolution: which of a member's *own* values other members hold, asked token by token.

A member sends the tokens of its own current values of a kind. For each token the hub answers
only if the member's own active filter holds all ``k`` of its positions, and then with the
number of *other* members whose own active filter holds all ``k`` (0 when fewer than
``quorum − 1`` do), plus their names where the forum's policy reveals members. Nothing a member
receives is about positions or about other members' bits, so a member holding the forum secret
cannot tokenise an enumerable space (IPv4, phone numbers) offline and read other members'
values off the answer; asking is bounded by query budgets
(:mod:`sigshare.hub.matching.query_ledger`) and every request is audited.

Confirmations run the same test. Answers take no family lock unless an expiry or parameter
change is due, so replicas answer in parallel; the membership index is cached per process,
keyed by exactly the submissions it was built from (:class:`IndexCache`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import IntEnum

import numpy as np
import numpy.typing as npt
from sqlalchemy.orm import Session

from sigshare.hub.domain import KindParameters, Principal, Submission
from sigshare.hub.errors import ConflictError, InvalidArgumentError, PreconditionError
from sigshare.hub.matching.membership import (
    Bits,
    IndexCache,
    MembershipIndex,
    has_slot,
    holder_counts,
    select_slots,
    without_slot,
)
from sigshare.hub.services.families import is_prepared, prepare
from sigshare.hub.storage.audit import AuditRepository
from sigshare.hub.storage.ledgers import QueryLedgerRepository
from sigshare.hub.storage.parameters import ParameterRepository
from sigshare.hub.storage.principals import PrincipalRepository
from sigshare.hub.storage.submissions import SubmissionRepository
from sigshare.sketch.codec import decode_bloom
from sigshare.sketch.errors import SketchError
from sigshare.sketch.prf import TOKEN_BYTES, TokenArray


class TokenStatus(IntEnum):
    """Per-token outcome (stable values: they travel on the wire)."""

    ANSWERED = 0
    NOT_HELD = 1
    """The requester's own filter does not hold the token: not answered, nothing recorded."""
    OVER_BUDGET = 2
    """A query budget is spent: not answered, nothing recorded."""


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _microseconds(moment: datetime) -> int:
    """Microseconds since the Unix epoch, exactly (the query ledger's time unit)."""
    return (moment - _EPOCH) // timedelta(microseconds=1)


def tokens_from_buffer(data: bytes) -> TokenArray:
    """Concatenated 16-byte tokens as a token array (``InvalidArgumentError`` if ragged)."""
    if len(data) % TOKEN_BYTES:
        raise InvalidArgumentError(f"tokens are {TOKEN_BYTES} bytes each; got {len(data)} bytes")
    tokens: TokenArray = np.frombuffer(data, dtype="<u8").reshape(-1, 2)
    return tokens


def kind_parameters(session: Session, kind: str, key_id: str) -> KindParameters:
    """The kind's parameters, refusing a kind that is not enabled or another key epoch."""
    params = ParameterRepository(session).get_kind(kind)
    if params is None:
        raise PreconditionError(f"indicator kind {kind!r} is not enabled on this hub")
    if key_id != params.key_id:
        raise PreconditionError(
            f"{kind}: key id {key_id!r} is not the forum's current key id {params.key_id!r}"
        )
    return params


def require_token_count(params: KindParameters, count: int) -> None:
    """A request announces at most ``capacity`` tokens: more can never be the member's own."""
    if count > params.capacity:
        raise InvalidArgumentError(
            f"{count} tokens in one request; {params.kind} members hold at most "
            f"{params.capacity} values"
        )


@dataclass(frozen=True, slots=True)
class _Snapshot:
    params: KindParameters
    active: list[Submission]
    own: Submission
    index: MembershipIndex
    own_slot: int


def _snapshot(
    session: Session, cache: IndexCache, member: Principal, params: KindParameters, now: datetime
) -> _Snapshot:
    submissions = SubmissionRepository(session)
    digest = params.digest()
    if not is_prepared(session, params, now):
        submissions.lock_family(params.kind)
        prepare(session, params, now)
    active = submissions.active_of_live_members(params.kind, params.key_id, now)
    own = next((s for s in active if s.member_id == member.id), None)
    if own is None or own.params_digest != digest:
        raise PreconditionError(
            f"submit a filter of kind {params.kind} before resolving it: members learn only "
            "about values they hold themselves"
        )
    sources = [(s.member_id, (s.id, s.content_sha256)) for s in active]
    by_member = {s.member_id: s for s in active}
    bloom = params.bloom_params()

    def bits_of(member_id: int) -> Bits:
        submission = by_member[member_id]
        try:
            return decode_bloom(submissions.payload(submission.id), bloom).bits
        except SketchError as error:  # verified when accepted: storage corruption
            raise ConflictError(f"stored filter {submission.id} is unreadable: {error}") from None

    def build(base: MembershipIndex | None) -> MembershipIndex:
        if base is not None:
            patched = base.patched(sources, bits_of)
            if patched is not None:
                return patched
        filters = [(member_id, bits_of(member_id)) for member_id, _ in sources]
        return MembershipIndex.build(params.m, params.k, filters, sources)

    index = cache.get((params.kind, digest), tuple(sources), build)
    slot = index.slot_of(member.id)
    assert slot is not None, "the requester's submission is one the index was built from"
    return _Snapshot(params, active, own, index, slot)


@dataclass(frozen=True, slots=True, kw_only=True)
class Answers:
    """The outcome of one request, in request order."""

    params: KindParameters
    members: int
    """Active filters of the kind, the requester's included."""
    status: npt.NDArray[np.uint8]
    others: npt.NDArray[np.uint8]
    """Other members holding each answered token (0 below quorum − 1 and when not answered)."""
    holder_names: tuple[str, ...]
    """Where the policy reveals members: the names ``holders`` bits refer to; else empty."""
    holders: npt.NDArray[np.uint8] | None
    submission_tokens: int
    submission_budget: int
    day_tokens: int
    day_budget: int
    budget_frees_at: datetime | None
    computed_at: datetime

    def count(self, status: TokenStatus) -> int:
        return int(np.count_nonzero(self.status == status))


def _answer(
    session: Session,
    cache: IndexCache,
    member: Principal,
    params: KindParameters,
    *,
    tokens: TokenArray,
    now: datetime,
) -> Answers:
    """The per-member test and the query budgets, for ``tokens`` in request order."""
    snapshot = _snapshot(session, cache, member, params, now)
    masks = snapshot.index.holders(tokens)
    held = has_slot(masks, snapshot.own_slot)
    others_masks = without_slot(masks, snapshot.own_slot)
    counts = holder_counts(others_masks)

    ledger_repository = QueryLedgerRepository(session)
    ledger = ledger_repository.get_for_update(member.id, params.kind, now)
    held_at = np.flatnonzero(held)
    since = _microseconds(snapshot.own.created_at)
    unix_now = max(_microseconds(now), since)
    charge = ledger.charge(
        tokens[held_at],
        now=unix_now,
        submission_since=since,
        submission_budget=snapshot.own.declared_count,
        day_budget=params.capacity,
    )
    if charge.distinct > snapshot.own.declared_count:
        raise PreconditionError(
            f"{params.kind}: {charge.distinct} distinct tokens your filter holds in one request, "
            f"more than the {snapshot.own.declared_count} values it declares: ask only about "
            "your own values"
        )
    ledger_repository.put(
        member.id, params.kind, charge.ledger, now, tokens_changed=charge.tokens_changed
    )
    SubmissionRepository(session).set_tokens_asked(snapshot.own.id, charge.submission_tokens)

    status = np.full(len(tokens), TokenStatus.NOT_HELD, dtype=np.uint8)
    status[held_at] = np.where(charge.answered, TokenStatus.ANSWERED, TokenStatus.OVER_BUDGET)
    answered = status == TokenStatus.ANSWERED
    shown = answered & (counts >= params.quorum - 1)
    others = np.where(shown, np.minimum(counts, 255), 0).astype(np.uint8)

    holder_names: tuple[str, ...] = ()
    holders = None
    if params.reveal_members:
        others_masks[~shown] = 0
        present = np.unpackbits(np.bitwise_or.reduce(others_masks, axis=0), bitorder="little")
        slots = [slot for slot in range(len(snapshot.index.slots)) if present[slot]]
        names = {p.id: p.name for p in PrincipalRepository(session).list()}
        holder_names = tuple(names[snapshot.index.slots[slot]] for slot in slots)
        holders = select_slots(others_masks, slots)
    return Answers(
        params=params,
        members=len(snapshot.active),
        status=status,
        others=others,
        holder_names=holder_names,
        holders=holders,
        submission_tokens=charge.submission_tokens,
        submission_budget=snapshot.own.declared_count,
        day_tokens=charge.day_tokens,
        day_budget=params.capacity,
        budget_frees_at=(
            None
            if charge.day_frees_at is None
            else _EPOCH + timedelta(microseconds=charge.day_frees_at)
        ),
        computed_at=now,
    )


def resolve(
    session: Session,
    cache: IndexCache,
    member: Principal,
    *,
    kind: str,
    key_id: str,
    tokens: TokenArray,
    now: datetime,
) -> Answers:
    """Answer the member's tokens of ``kind`` and charge its query budgets.

    The caller records the read with :func:`audit_answers` in its own short transaction before
    anything is sent: the audit chain's lock is then held for one small insert, not for the
    commit of the member's ledger.
    """
    params = kind_parameters(session, kind, key_id)
    require_token_count(params, len(tokens))
    return _answer(session, cache, member, params, tokens=tokens, now=now)


def audit_answers(session: Session, member: Principal, answers: Answers, now: datetime) -> None:
    """Record a resolution read and its figures in the audit log."""
    AuditRepository(session).append(
        member.name,
        "resolution.read",
        answers.params.kind,
        {
            "tokens": len(answers.status),
            "answered": answers.count(TokenStatus.ANSWERED),
            "not_held": answers.count(TokenStatus.NOT_HELD),
            "over_budget": answers.count(TokenStatus.OVER_BUDGET),
            "shared": int(np.count_nonzero(answers.others)),
            "submission_tokens": answers.submission_tokens,
            "day_tokens": answers.day_tokens,
        },
        at=now,
    )


def confirmable(
    session: Session,
    cache: IndexCache,
    member: Principal,
    params: KindParameters,
    *,
    tokens: TokenArray,
    now: datetime,
) -> tuple[npt.NDArray[np.bool_], int]:
    """Which ``tokens`` the member may confirm — answered, held by quorum − 1 others — and how
    many were refused only for the query budget."""
    if not len(tokens):
        return np.zeros(0, dtype=np.bool_), 0
    answers = _answer(session, cache, member, params, tokens=tokens, now=now)
    accepted = (answers.status == TokenStatus.ANSWERED) & (answers.others > 0)
    return accepted, answers.count(TokenStatus.OVER_BUDGET)
