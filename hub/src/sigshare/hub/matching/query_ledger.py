"""Query budgets: the distinct tokens a member asked the hub about, per kind, and when.

Every member holds the forum secret, so any answer about a token is an answer about a value the
member can name. Resolution answers only tokens the member's own filter holds, and this ledger
bounds how many distinct tokens it may ask about:

- per submission: at most the submission's declared count (the values it says it holds);
- per kind and rolling 24 hours: at most the kind's capacity, whatever the number of
  submissions (a member replacing its filter every hour with new values gets no more).

Repeating a token costs nothing. A request is charged token by token in order of first
occurrence: a token is answered when both budgets still have room for what it costs (a token
asked under an earlier filter costs the new filter's budget, not the day's again); the rest are
over budget and leave no trace. The ledger keeps, per distinct token, when
it was last asked, sorted by token so that a request is merged in ``O(n log n)`` without Python
loops; entries older than both the window and the current submission are dropped. A request
that only repeats earlier tokens changes their times, not the tokens, so storage rewrites only
the times (8 bytes a token) then.

Pure computation: the storage layer keeps the encoded ledger (:meth:`QueryLedger.encode`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sigshare.sketch.prf import TOKEN_BYTES, TokenArray

DAY = 86_400 * 1_000_000
"""The rolling window, in the ledger's unit: microseconds since the Unix epoch."""
_U64 = npt.NDArray[np.uint64]
_I64 = npt.NDArray[np.int64]


class LedgerFormatError(ValueError):
    """Stored ledger bytes do not decode (storage corruption)."""


def _sorted_order(hi: _U64, lo: _U64, presorted: int = 0) -> _I64:
    """A stable order of ``(hi, lo)`` pairs, ascending; the first ``presorted`` rows are
    already in order (the ledger), so sorting the rest and merging the two runs is linear.

    Sorting by ``hi`` alone is exact unless rows that share it differ in ``lo``; only those runs
    (rare for PRF outputs, but a request can be crafted) are re-sorted by ``(hi, lo)``. Both
    sorts are stable, so equal tokens keep their input order (the ledger's row first).
    """
    rest = presorted + np.argsort(hi[presorted:], kind="stable")
    order: _I64 = np.concatenate([np.arange(presorted, dtype=np.int64), rest])
    order = order[np.argsort(hi[order], kind="stable")]  # two sorted runs: a merge
    sorted_hi, sorted_lo = hi[order], lo[order]
    if len(order) < 2:
        return order
    starts = np.flatnonzero(np.r_[True, sorted_hi[1:] != sorted_hi[:-1]])
    if len(starts) == len(order):
        return order
    mixed = np.minimum.reduceat(sorted_lo, starts) != np.maximum.reduceat(sorted_lo, starts)
    if mixed.any():
        run = np.cumsum(np.r_[True, sorted_hi[1:] != sorted_hi[:-1]]) - 1
        at = np.flatnonzero(mixed[run])
        rows = order[at]
        order[at] = rows[np.lexsort((lo[rows], hi[rows]))]
    return order


def _greedy(sub_cost: _I64, day_cost: _I64, sub_room: int, day_room: int) -> npt.NDArray[np.bool_]:
    """Charge 0/1 costs to two budgets token by token, in order: a token is granted when every
    budget it costs still has room (a token costing nothing is always granted). Vectorised:
    until the first refusal every token fits (the cumulative costs); from then on one budget is
    full, so a token costing both is refused and one costing a single budget is granted while
    that budget has room left — the first ``room`` such tokens.
    """
    fits = ((sub_cost == 0) | (np.cumsum(sub_cost) <= sub_room)) & (
        (day_cost == 0) | (np.cumsum(day_cost) <= day_room)
    )
    first_refusal = int(np.argmin(fits)) if not fits.all() else len(fits)
    granted: npt.NDArray[np.bool_] = fits.copy()
    if first_refusal == len(fits):
        return granted
    used_sub = int(sub_cost[:first_refusal].sum())
    used_day = int(day_cost[:first_refusal].sum())
    tail = slice(first_refusal, None)
    sub_only = (sub_cost[tail] == 1) & (day_cost[tail] == 0)
    day_only = (sub_cost[tail] == 0) & (day_cost[tail] == 1)
    free = (sub_cost[tail] == 0) & (day_cost[tail] == 0)
    granted[tail] = (
        free
        | (sub_only & (np.cumsum(sub_only) <= sub_room - used_sub))
        | (day_only & (np.cumsum(day_only) <= day_room - used_day))
    )
    return granted


def _halves(tokens: TokenArray) -> tuple[_U64, _U64]:
    words = np.ascontiguousarray(tokens, dtype="<u8").reshape(-1, 2)
    return words[:, 0].astype(np.uint64), words[:, 1].astype(np.uint64)


@dataclass(frozen=True, slots=True)
class Charge:
    """What a request may be answered for, and the ledger after answering it."""

    answered: npt.NDArray[np.bool_]
    """Per request token, in request order: within budget (or free)."""
    distinct: int
    """Distinct tokens in the request."""
    submission_tokens: int
    """Distinct tokens asked against the submission, this request included."""
    day_tokens: int
    """Distinct tokens asked in the 24 hours up to now, this request included."""
    day_frees_at: int | None
    """When refused tokens exceeded the 24-hour budget: when its oldest entry leaves it."""
    ledger: QueryLedger
    tokens_changed: bool
    """Whether the ledger's tokens changed (entries added or dropped), not only their times."""


@dataclass(frozen=True, slots=True)
class QueryLedger:
    """Distinct tokens with the time each was last asked (microseconds since the Unix epoch:
    exact enough that requests around a replacement never share a time), sorted by token."""

    hi: _U64
    lo: _U64
    asked_at: _I64

    @classmethod
    def empty(cls) -> QueryLedger:
        return cls(
            np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.uint64), np.zeros(0, np.int64)
        )

    def __len__(self) -> int:
        return len(self.hi)

    def encode_tokens(self) -> bytes:
        """16 bytes per token, as sent, in ledger order."""
        tokens = np.empty((len(self), 2), dtype="<u8")
        tokens[:, 0] = self.hi
        tokens[:, 1] = self.lo
        return tokens.tobytes()

    def encode_times(self) -> bytes:
        """8 bytes (int64 LE microseconds) per token, in ledger order."""
        if len(self) and self.asked_at.min() < 0:
            raise LedgerFormatError("a query time before 1970")
        return self.asked_at.astype("<i8").tobytes()

    def encode(self) -> tuple[bytes, bytes]:
        """``(tokens, asked_at)``: :meth:`encode_tokens` and :meth:`encode_times`."""
        return self.encode_tokens(), self.encode_times()

    @classmethod
    def decode(cls, tokens: bytes, asked_at: bytes) -> QueryLedger:
        if len(tokens) % TOKEN_BYTES or len(asked_at) != len(tokens) // 2:
            raise LedgerFormatError(
                f"query ledger of {len(tokens)} token bytes and {len(asked_at)} time bytes"
            )
        words = np.frombuffer(tokens, dtype="<u8").reshape(-1, 2)
        ledger = cls(
            words[:, 0].astype(np.uint64),
            words[:, 1].astype(np.uint64),
            np.frombuffer(asked_at, dtype="<i8").astype(np.int64),
        )
        if len(ledger) > 1:
            order_ok = (ledger.hi[1:] > ledger.hi[:-1]) | (
                (ledger.hi[1:] == ledger.hi[:-1]) & (ledger.lo[1:] > ledger.lo[:-1])
            )
            if not order_ok.all():
                raise LedgerFormatError("query ledger tokens are not sorted and distinct")
        return ledger

    def count_since(self, since: int) -> int:
        return int(np.count_nonzero(self.asked_at >= since))

    def charge(
        self,
        tokens: TokenArray,
        *,
        now: int,
        submission_since: int,
        submission_budget: int,
        day_budget: int,
    ) -> Charge:
        """Charge the request ``tokens`` (in request order, repeats allowed) to both budgets.

        Times are microseconds since the Unix epoch. ``submission_since`` is when the current
        submission started: tokens last asked since then are already counted for it. The
        returned ledger holds every token asked since ``min(submission_since, now − 24 h)``, with
        ``now`` for the tokens answered here.
        """
        day_since = now - DAY + 1
        n_old = len(self)
        req_hi, req_lo = _halves(tokens)
        hi = np.concatenate([self.hi, req_hi])
        lo = np.concatenate([self.lo, req_lo])
        order = _sorted_order(hi, lo, presorted=n_old)
        hi, lo = hi[order], lo[order]
        new_group = np.ones(len(order), dtype=np.bool_)
        if len(order) > 1:
            new_group[1:] = (hi[1:] != hi[:-1]) | (lo[1:] != lo[:-1])
        group = np.cumsum(new_group) - 1
        groups = int(group[-1]) + 1 if len(group) else 0
        first_row = np.flatnonzero(new_group)
        # The ledger's rows are distinct and come first in every group they belong to (stable).
        from_ledger = order[first_row] < n_old
        last_asked = np.full(groups, np.iinfo(np.int64).min, dtype=np.int64)
        last_asked[from_ledger] = self.asked_at[order[first_row[from_ledger]]]

        is_request = order >= n_old
        request_rows = np.flatnonzero(is_request)
        request_index = order[request_rows] - n_old
        request_group = np.empty(len(tokens), dtype=np.int64)
        request_group[request_index] = group[request_rows]
        # The first occurrence of each asked group, in request order.
        first_index = np.full(groups, len(tokens), dtype=np.int64)
        np.minimum.at(first_index, request_group, np.arange(len(tokens), dtype=np.int64))
        asked_groups = np.flatnonzero(first_index < len(tokens))
        asked_groups = asked_groups[np.argsort(first_index[asked_groups], kind="stable")]

        sub_used = int(np.count_nonzero(last_asked >= submission_since))
        day_used = int(np.count_nonzero(last_asked >= day_since))
        sub_cost = (last_asked[asked_groups] < submission_since).astype(np.int64)
        day_cost = (last_asked[asked_groups] < day_since).astype(np.int64)
        granted = _greedy(sub_cost, day_cost, submission_budget - sub_used, day_budget - day_used)
        answered_group = np.zeros(groups, dtype=np.bool_)
        answered_group[asked_groups[granted]] = True
        answered = answered_group[request_group]

        day_limited = bool(
            (~granted & (day_cost == 1)).any()
            and day_used + int(day_cost[granted].sum()) >= day_budget
        )
        new_asked = last_asked.copy()
        new_asked[answered_group] = now
        keep_since = min(submission_since, day_since)
        keep = new_asked >= keep_since
        ledger = QueryLedger(hi[first_row][keep], lo[first_row][keep], new_asked[keep])
        tokens_changed = bool(keep.sum() != n_old or (~from_ledger & keep).any())
        frees_at = None
        if day_limited:
            in_window = ledger.asked_at[ledger.asked_at >= day_since]
            frees_at = int(in_window.min()) + DAY if len(in_window) else now
        return Charge(
            answered=answered,
            distinct=len(asked_groups),
            submission_tokens=ledger.count_since(submission_since),
            day_tokens=ledger.count_since(day_since),
            day_frees_at=frees_at,
            ledger=ledger,
            tokens_changed=tokens_changed,
        )
