"""Query budgets against a plain-Python oracle: a dict of token → last time asked, charged one
token at a time in request order."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sigshare.hub.matching.query_ledger import (
    DAY,
    LedgerFormatError,
    QueryLedger,
)
from sigshare.sketch.prf import TokenArray

NOW = 1_800_000_000_000_000
"""Microseconds since the epoch, the ledger's unit."""
HOUR = 3_600_000_000


def _tokens(values: list[tuple[int, int]]) -> TokenArray:
    array: TokenArray = np.array(values, dtype=np.uint64).reshape(-1, 2)
    return array


def _oracle(
    ledger: dict[tuple[int, int], int],
    request: list[tuple[int, int]],
    *,
    now: int,
    since: int,
    sub_budget: int,
    day_budget: int,
) -> tuple[list[bool], dict[tuple[int, int], int]]:
    """Charge token by token in order of first occurrence: granted when every budget the token
    costs has room (costing nothing, it is always granted)."""
    day_since = now - DAY + 1
    sub_used = sum(1 for t in ledger.values() if t >= since)
    day_used = sum(1 for t in ledger.values() if t >= day_since)
    granted: dict[tuple[int, int], bool] = {}
    for token in request:
        if token in granted:
            continue
        last = ledger.get(token)
        sub_cost = 0 if last is not None and last >= since else 1
        day_cost = 0 if last is not None and last >= day_since else 1
        if (sub_cost == 0 or sub_used + 1 <= sub_budget) and (
            day_cost == 0 or day_used + 1 <= day_budget
        ):
            sub_used += sub_cost
            day_used += day_cost
            granted[token] = True
        else:
            granted[token] = False
    after = dict(ledger)
    for token, ok in granted.items():
        if ok:
            after[token] = now
    keep = min(since, day_since)
    after = {t: at for t, at in after.items() if at >= keep}
    return [granted[t] for t in request], after


def _as_dict(ledger: QueryLedger) -> dict[tuple[int, int], int]:
    return {
        (int(h), int(lo)): int(at)
        for h, lo, at in zip(ledger.hi, ledger.lo, ledger.asked_at, strict=True)
    }


def _from_dict(entries: dict[tuple[int, int], int]) -> QueryLedger:
    ordered = sorted(entries.items())
    return QueryLedger(
        np.array([t[0] for t, _ in ordered], dtype=np.uint64),
        np.array([t[1] for t, _ in ordered], dtype=np.uint64),
        np.array([at for _, at in ordered], dtype=np.int64),
    )


# Small hi/lo alphabets so that repeats, shared hi halves and ledger hits are common.
_token = st.tuples(st.integers(0, 6), st.integers(0, 3))


@settings(max_examples=300, deadline=None)
@given(
    existing=st.dictionaries(_token, st.integers(NOW - 3 * DAY, NOW), max_size=20),
    request=st.lists(_token, max_size=40),
    since_ago=st.integers(0, 3 * DAY),
    sub_budget=st.integers(0, 30),
    day_budget=st.integers(0, 30),
)
def test_charge_matches_the_one_token_at_a_time_oracle(
    existing: dict[tuple[int, int], int],
    request: list[tuple[int, int]],
    since_ago: int,
    sub_budget: int,
    day_budget: int,
) -> None:
    since = NOW - since_ago
    charge = _from_dict(existing).charge(
        _tokens(request),
        now=NOW,
        submission_since=since,
        submission_budget=sub_budget,
        day_budget=day_budget,
    )
    answered, after = _oracle(
        existing, request, now=NOW, since=since, sub_budget=sub_budget, day_budget=day_budget
    )
    assert charge.answered.tolist() == answered
    assert _as_dict(charge.ledger) == after
    assert charge.tokens_changed == (set(after) != set(existing))
    assert charge.distinct == len(set(request))
    assert charge.submission_tokens == sum(1 for at in after.values() if at >= since)
    day_since = NOW - DAY + 1
    assert charge.day_tokens == sum(1 for at in after.values() if at >= day_since)
    assert charge.submission_tokens <= max(
        sub_budget, sum(1 for at in existing.values() if at >= since)
    )


def test_repeating_tokens_costs_nothing() -> None:
    ledger = QueryLedger.empty()
    request = _tokens([(1, 1), (2, 2), (1, 1), (3, 3)])
    first = ledger.charge(request, now=NOW, submission_since=NOW, submission_budget=3, day_budget=3)
    assert first.answered.all()
    assert first.distinct == 3
    again = first.ledger.charge(
        request, now=NOW + 60_000_000, submission_since=NOW, submission_budget=3, day_budget=3
    )
    assert again.answered.all()
    assert (again.submission_tokens, again.day_tokens) == (3, 3)
    assert not again.tokens_changed  # only the times move: storage rewrites 8 bytes a token


def test_a_new_submission_gets_a_new_budget_but_the_day_budget_remains() -> None:
    old = [(i, 0) for i in range(5)]
    new = [(i, 1) for i in range(5)]
    first = QueryLedger.empty().charge(
        _tokens(old), now=NOW, submission_since=NOW, submission_budget=5, day_budget=8
    )
    # An hour later the member replaced its filter (new submission) with other values.
    later = NOW + HOUR
    second = first.ledger.charge(
        _tokens(new), now=later, submission_since=later, submission_budget=5, day_budget=8
    )
    assert second.answered.tolist() == [True, True, True, False, False]
    assert second.day_tokens == 8
    assert second.submission_tokens == 3
    assert second.day_frees_at == NOW + DAY
    # Once the first request has left the window, the rest is answered.
    after_a_day = NOW + DAY
    third = second.ledger.charge(
        _tokens(new), now=after_a_day, submission_since=later, submission_budget=5, day_budget=8
    )
    assert third.answered.all()
    assert third.day_frees_at is None


def test_values_asked_yesterday_fit_a_new_filter_when_new_ones_exceed_the_day() -> None:
    """A member at capacity replaces its filter with a few new values and asks about all of
    them: the old values (asked under the previous filter within the day) cost only the new
    filter's budget and are answered; the new ones exceed the day's budget and wait."""
    old = [(i, 0) for i in range(8)]
    first = QueryLedger.empty().charge(
        _tokens(old), now=NOW, submission_since=NOW, submission_budget=8, day_budget=8
    )
    later = NOW + HOUR
    request = [(100, 1), (101, 1), *old[2:]]  # two new values first, in request order
    second = first.ledger.charge(
        _tokens(request), now=later, submission_since=later, submission_budget=8, day_budget=8
    )
    assert second.answered.tolist() == [False, False] + [True] * 6
    assert second.submission_tokens == 6
    assert second.day_frees_at == NOW + DAY


def test_request_order_decides_which_tokens_fit() -> None:
    request = _tokens([(9, 9), (8, 8), (7, 7)])
    charge = QueryLedger.empty().charge(
        request, now=NOW, submission_since=NOW, submission_budget=2, day_budget=10
    )
    assert charge.answered.tolist() == [True, True, False]
    assert charge.day_frees_at is None  # the submission budget was the limit


def test_old_entries_are_dropped_only_when_neither_budget_needs_them() -> None:
    entries = {(1, 0): NOW - 2 * DAY, (2, 0): NOW - DAY // 2}
    since_long_ago = NOW - 3 * DAY
    kept = _from_dict(entries).charge(
        _tokens([]), now=NOW, submission_since=since_long_ago, submission_budget=9, day_budget=9
    )
    assert _as_dict(kept.ledger) == entries  # both still count for the submission
    pruned = _from_dict(entries).charge(
        _tokens([]), now=NOW, submission_since=NOW, submission_budget=9, day_budget=9
    )
    assert _as_dict(pruned.ledger) == {(2, 0): NOW - DAY // 2}


def test_encode_decode_round_trip_and_corruption_is_refused() -> None:
    charge = QueryLedger.empty().charge(
        _tokens([(5, 1), (1, 2), (1, 1), (2**64 - 1, 0)]),
        now=NOW,
        submission_since=NOW,
        submission_budget=10,
        day_budget=10,
    )
    tokens, asked = charge.ledger.encode()
    assert len(tokens) == 4 * 16
    assert len(asked) == 4 * 8
    decoded = QueryLedger.decode(tokens, asked)
    assert _as_dict(decoded) == _as_dict(charge.ledger)
    assert [(int(h), int(lo)) for h, lo in zip(decoded.hi, decoded.lo, strict=True)] == [
        (1, 1),
        (1, 2),
        (5, 1),
        (2**64 - 1, 0),
    ]
    with pytest.raises(LedgerFormatError, match="token bytes"):
        QueryLedger.decode(tokens[:-1], asked)
    with pytest.raises(LedgerFormatError, match="token bytes"):
        QueryLedger.decode(tokens, asked[:-8])
    swapped = tokens[16:32] + tokens[:16] + tokens[32:]
    with pytest.raises(LedgerFormatError, match="not sorted"):
        QueryLedger.decode(swapped, asked)
    with pytest.raises(LedgerFormatError, match="before 1970"):
        QueryLedger(decoded.hi, decoded.lo, decoded.asked_at - NOW - 1).encode()


def test_a_crafted_request_sharing_one_half_is_charged_exactly() -> None:
    # Tokens that share their first 64 bits are still distinct tokens.
    request = _tokens([(42, lo) for lo in range(1000)] + [(42, 7)])
    charge = QueryLedger.empty().charge(
        request, now=NOW, submission_since=NOW, submission_budget=600, day_budget=10_000
    )
    assert charge.distinct == 1000
    assert int(charge.answered.sum()) == 601  # 600 new ones, and the repeat of (42, 7)
    assert charge.submission_tokens == 600
