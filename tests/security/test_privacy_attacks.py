"""Privacy attacks on the sketches and the hub, with the figures ``python -m bench.attacks``
prints: a secret-less dictionary attack stays at chance level, collusion recovers everything,
an insider holding the forum secret learns nothing about the others' values beyond its own
filter (the old resolution vector gave it every one), claiming values is bounded by the day's
query budget, answers do not move when values outside the requester's filter change, and
poisoned filters are refused without a trace. See docs/threat-model.md for what each result
means.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.attacks import (
    ALPHA,
    COLLUSION,
    DEFAULT_CAPACITY,
    DEFAULT_FORUM_FPR,
    DEFAULT_MAX_MEMBERS,
    DENSE,
    DENSE_CAPACITY,
    DENSE_FORUM_FPR,
    FORUM,
    HUB_STRATEGIES,
    INSIDER,
    IP,
    KEY_ID,
    PER_MEMBER,
    SEED,
    ClaimReport,
    DictionaryReport,
    DifferentialReport,
    EnumerationReport,
    PoisonReport,
    address_forum,
    binomial_bound,
    binomial_sf,
    claiming_attack,
    dictionary_attack,
    differential_attack,
    enumeration_attack,
    hypergeometric_interval,
    make_forum,
    poison_attack,
    poison_filters,
)
from sigshare.sketch.bloom import BloomParams
from sigshare.sketch.checks import check_filter
from sigshare.sketch.errors import SketchError

SPACE = 1 << 16
WHOLE_SPACE_CAPACITY = SPACE
"""A forum whose capacity admits one request for the whole /16: the hub must then refuse it
or answer only the requester's own tokens."""


@pytest.fixture(scope="module", params=[FORUM, DENSE], ids=["forum-default", "dense"])
def dictionary(request: pytest.FixtureRequest) -> DictionaryReport:
    return dictionary_attack(request.param)


@pytest.fixture(
    scope="module",
    params=[
        (DEFAULT_CAPACITY, DEFAULT_FORUM_FPR),
        (WHOLE_SPACE_CAPACITY, DEFAULT_FORUM_FPR),
        (DENSE_CAPACITY, DENSE_FORUM_FPR),
    ],
    ids=["default-capacity", "capacity-65536", "dense"],
)
def enumeration(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> EnumerationReport:
    capacity, forum_fpr = request.param
    return enumeration_attack(
        tmp_path_factory.mktemp("enumeration"), capacity=capacity, forum_fpr=forum_fpr
    )


@pytest.fixture(scope="module", params=[2, 3], ids=["quorum-2", "quorum-3"])
def claiming(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> ClaimReport:
    return claiming_attack(tmp_path_factory.mktemp("claiming"), quorum=request.param)


@pytest.fixture(scope="module")
def differential(tmp_path_factory: pytest.TempPathFactory) -> DifferentialReport:
    return differential_attack(tmp_path_factory.mktemp("differential"))


@pytest.fixture(scope="module")
def poison(tmp_path_factory: pytest.TempPathFactory) -> PoisonReport:
    return poison_attack(tmp_path_factory.mktemp("poison"))


# ---------------------------------------------------------------------------------- statistics


def test_binomial_bound_is_the_upper_quantile() -> None:
    assert binomial_bound(8_000, 0.0) == 0
    bound = binomial_bound(8_000, 0.01)
    assert binomial_sf(8_000, 0.01, bound + 1) <= ALPHA < binomial_sf(8_000, 0.01, bound)
    assert binomial_sf(10, 0.5, 0) == 1.0


@pytest.mark.parametrize(
    ("population", "successes", "draws", "alpha"),
    [(60, 12, 20, 0.01), (50, 50, 10, 0.01), (40, 0, 10, 0.01), (30, 10, 30, 1e-6)],
)
def test_hypergeometric_interval_is_the_two_sided_quantile(
    population: int, successes: int, draws: int, alpha: float
) -> None:
    """Against the exact distribution by counting: ``P(X < low) ≤ alpha < P(X < low + 1)`` and
    the same for the upper tail, unless the interval already reaches the support's end."""
    pmf = [
        math.comb(successes, x)
        * math.comb(population - successes, draws - x)
        / math.comb(population, draws)
        for x in range(draws + 1)
    ]
    low, high = hypergeometric_interval(population, successes, draws, alpha)
    support = [x for x, p in enumerate(pmf) if p > 0]
    assert support[0] <= low <= high <= support[-1]
    assert sum(pmf[:low]) <= alpha + 1e-12
    assert sum(pmf[high + 1 :]) <= alpha + 1e-12
    assert low == support[0] or sum(pmf[: low + 1]) > alpha
    assert high == support[-1] or sum(pmf[high:]) > alpha


# ---------------------------------------------------------------------------------- curious hub


def test_the_dictionary_holds_every_true_value_and_the_filters_pass_the_hub_checks() -> None:
    forum = make_forum(DENSE)
    for name, bloom in forum.filters.items():
        check_filter(bloom, forum.params)
        held = [forum.canonical[i] for i in np.flatnonzero(forum.holdings[name])]
        assert bloom.contains(held).all()
        assert len(held) == DENSE.per_member


def test_the_forums_are_sized_for_the_forum_level_rate() -> None:
    """Filters are sized at the per-filter rate forum FPR / (max members − 1) (issue 10)."""
    assert FORUM.params() == BloomParams.for_capacity(
        "email", KEY_ID, DEFAULT_CAPACITY, DEFAULT_FORUM_FPR / (DEFAULT_MAX_MEMBERS - 1)
    )
    assert DENSE.params().target_fpr == pytest.approx(0.01)


def test_hub_without_the_secret_recovers_nothing_beyond_chance(
    dictionary: DictionaryReport,
) -> None:
    """Every secret-less strategy flags true values no more often than fill^k predicts: the
    count stays within the Binomial bound at p < 1e-6, and as many false as true candidates are
    flagged per value (the flags carry no information)."""
    blind = [row for row in dictionary.results if not row.uses_secret]
    assert {row.strategy for row in blind} == set(HUB_STRATEGIES)
    for row in blind:
        assert row.flagged_true <= row.bound_true, row
        assert row.flagged <= row.bound_flagged, row
        assert row.beyond_chance == 0, row
    # Summed over strategies, the true-value hit rate matches the false-value hit rate.
    true_hits = sum(row.flagged_true for row in blind)
    false_hits = sum(row.flagged - row.flagged_true for row in blind)
    trials_true = dictionary.true_values * len(blind)
    trials_false = (dictionary.dictionary * dictionary.members - dictionary.true_values) * len(
        blind
    )
    rate_true, rate_false = true_hits / trials_true, false_hits / trials_false
    assert (
        abs(rate_true - rate_false)
        <= 6 * np.sqrt(max(rate_false, 1e-12) * (1 / trials_true + 1 / trials_false)) + 1e-9
    )


def test_dense_filters_make_chance_level_measurable(dictionary: DictionaryReport) -> None:
    if dictionary.setting != DENSE.name:
        assert dictionary.expected_false_positives < 1e-3  # forum default: chance level is 0
        return
    assert 0.3 < dictionary.fill < 0.7
    assert dictionary.expected_false_positives > 100  # so "at chance" is a real comparison


def test_collusion_with_the_secret_recovers_every_true_value(dictionary: DictionaryReport) -> None:
    (row,) = [row for row in dictionary.results if row.uses_secret]
    assert row.strategy == COLLUSION
    assert row.recall == 1.0
    assert row.flagged_true == dictionary.true_values
    assert row.flagged - row.flagged_true <= row.bound_flagged  # the rest are false positives


# ---------------------------------------------------------------------------------- insider


def _oracle(report: EnumerationReport) -> tuple[int, int]:
    """From the attack's own data: how many of the insider's own addresses, and of its filter's
    false positives, it is entitled to a non-zero answer for — answered within its declared
    count (the scan asks in address order, so the first ``declared`` tokens its filter holds)
    and held by quorum − 1 other members' filters."""
    params = BloomParams.for_forum(
        IP, KEY_ID, report.capacity, report.forum_fpr, report.max_members
    )
    forum = address_forum(params, SEED)
    own = forum.holdings[INSIDER]
    held = forum.filters[INSIDER].contains_tokens(forum.tokens)
    answered = np.zeros_like(held)
    answered[np.flatnonzero(held)[: report.declared]] = True
    shared = answered & (forum.filter_holders() >= report.quorum - 1)
    return int(np.count_nonzero(own & shared)), int(np.count_nonzero(~own & shared))


def test_a_member_without_a_submission_gets_no_answers_and_cannot_confirm(
    enumeration: EnumerationReport,
) -> None:
    assert enumeration.no_submission_resolve == "FAILED_PRECONDITION"
    assert enumeration.no_submission_confirm == "FAILED_PRECONDITION"


def test_the_old_resolution_vector_gave_an_insider_every_address_the_others_hold(
    enumeration: EnumerationReport,
) -> None:
    """Before: tokenising the /16 offline against R = C − B_own read off every address held by
    ≥ quorum − 1 others (here all 5,250 of them, quorum 2)."""
    assert enumeration.learnable == enumeration.others_distinct == 5_250
    assert enumeration.before_recovered == enumeration.learnable


def test_an_insider_learns_nothing_beyond_its_own_filter(enumeration: EnumerationReport) -> None:
    """Now: every non-zero answer, over every RPC, is for an address the insider's own filter
    holds, and equals the exact oracle (what a member holding the address learns); the
    addresses it learns are exactly its own shared ones and its filter's shared false
    positives."""
    assert enumeration.answers_exact
    assert enumeration.nonzero_beyond_own_and_false_positives == 0
    assert enumeration.nonzero_beyond_own <= enumeration.own_false_positives
    own_shared, false_positives_shared = _oracle(enumeration)
    assert enumeration.nonzero_own == own_shared > 0
    assert enumeration.nonzero_beyond_own == false_positives_shared
    assert enumeration.nonzero == own_shared + false_positives_shared
    if enumeration.forum_fpr == DENSE_FORUM_FPR:  # the case the dense fixture is for
        assert enumeration.nonzero_beyond_own > 0
    # An answer above the true holders comes only from another filter's false positive: no more
    # of those than three filters at their rate give over the answered tokens.
    assert enumeration.other_filter_false_positives <= binomial_bound(
        3 * enumeration.answered, enumeration.others_fpr
    )


def test_a_resolve_of_the_whole_space_is_refused_or_answers_only_own_tokens(
    enumeration: EnumerationReport,
) -> None:
    held = enumeration.own + enumeration.own_false_positives
    if enumeration.capacity < enumeration.space:
        assert enumeration.whole_space == "INVALID_ARGUMENT"  # more tokens than anyone holds
    elif held > enumeration.declared:
        assert enumeration.whole_space == "FAILED_PRECONDITION"  # more held than it declares
    else:
        assert enumeration.whole_space == "OK"
        assert enumeration.whole_space_answered == held
    if enumeration.capacity == WHOLE_SPACE_CAPACITY:
        assert enumeration.whole_space != "INVALID_ARGUMENT"  # the case the fixture is for


def test_answers_never_exceed_the_declared_count(enumeration: EnumerationReport) -> None:
    held = enumeration.own + enumeration.own_false_positives
    assert enumeration.declared == PER_MEMBER
    assert enumeration.answered_most <= enumeration.declared
    assert enumeration.answered == min(held, enumeration.declared)
    assert enumeration.over_budget == held - enumeration.answered
    assert enumeration.not_held == enumeration.space - held


def test_confirm_matches_and_status_reveal_nothing_more(enumeration: EnumerationReport) -> None:
    """Confirming every token of the /16 is accepted exactly for the tokens Resolve answered
    non-zero, batch by batch; the matches listed are among them; the status lists only the
    insider's own submission."""
    assert enumeration.confirm_offered == enumeration.space
    assert enumeration.confirm_equals_resolve
    assert enumeration.confirm_accepted == enumeration.nonzero
    assert enumeration.matches > 0
    assert enumeration.matches_outside_nonzero == 0
    assert enumeration.status_member == INSIDER
    assert enumeration.status_submissions == 1
    assert enumeration.status_foreign == 0


def test_a_filter_is_not_replaced_within_the_replace_interval(
    enumeration: EnumerationReport,
) -> None:
    assert enumeration.replace_within_interval == "FAILED_PRECONDITION"


# ---------------------------------------------------------------------------------- claiming


def test_the_day_budget_holds_across_replaced_submissions(claiming: ClaimReport) -> None:
    """Claims in fresh filters are answered until the day's distinct tokens reach the capacity
    — own ones included, whatever the number of submissions — then refused, and the refusal
    says when the budget frees: 24 hours after the first question."""
    assert claiming.own_answered == PER_MEMBER
    assert claiming.day_answered == claiming.capacity
    assert claiming.claims_answered == claiming.hard_bound == claiming.capacity - PER_MEMBER
    *answered, refused = claiming.rounds
    assert all(r.replace_status == "OK" for r in claiming.rounds)
    for r in answered:
        assert r.answered == r.declared == claiming.claim_size
        assert r.submission_tokens <= r.declared
        assert r.day_tokens <= claiming.capacity
    assert refused.answered == 0
    assert refused.over_budget == claiming.claim_size
    assert refused.learned == 0
    assert refused.day_tokens == claiming.capacity
    assert refused.budget_frees_in is not None
    assert abs(refused.budget_frees_in - 86_400) <= 5
    # Each claim filter looks ordinary, but cycling them shows: coordinators see the flag.
    assert "frequent_replacement" in claiming.review_flags


def test_claiming_learns_only_about_claims_at_the_expected_rate(claiming: ClaimReport) -> None:
    """The documented bound: per kind and rolling 24 h, the others' values an insider learns by
    claiming are at most capacity − its own questions (18,000 here), and for claims drawn
    without knowledge, hypergeometric around claims × learnable / candidates."""
    assert claiming.answers_exact
    assert claiming.learned <= claiming.hard_bound
    assert claiming.low <= claiming.learned <= claiming.high
    assert claiming.expected == pytest.approx(
        claiming.claims_answered * claiming.learnable / claiming.population
    )
    assert claiming.days_for_space == math.ceil(claiming.population / claiming.hard_bound)


def test_claims_fewer_than_quorum_minus_one_others_hold_resolve_to_zero(
    claiming: ClaimReport,
) -> None:
    """Class by class of true other holders: below quorum − 1 every answer is 0 — the insider
    cannot tell them apart; from quorum − 1 on, every answer is the exact count."""
    by_others = {row.others: row for row in claiming.classes}
    assert sum(row.claims for row in claiming.classes) == claiming.claims_answered
    for others, row in by_others.items():
        assert row.claims > 0, row
        assert row.exact == row.claims, row
        expected = row.claims if others >= claiming.quorum - 1 else 0
        assert row.nonzero == expected, row
    assert sum(row.nonzero for row in claiming.classes) == claiming.learned


def test_answers_depend_only_on_the_own_filter_and_the_holders_of_each_token(
    differential: DifferentialReport,
) -> None:
    """Two hub states differing only in other members' values outside the requester's filter
    answer the whole /16 byte for byte the same; a change inside it does show (the control)."""
    assert differential.asked == SPACE
    assert differential.changed_values == 1_100
    assert differential.precondition
    assert differential.answered > 0
    assert differential.identical
    assert differential.control_changed_values == 50
    assert differential.control_differs


# ---------------------------------------------------------------------------------- poisoning


def test_poisoned_filters_are_refused_by_check_filter() -> None:
    forum = make_forum(FORUM)
    for case, bloom in poison_filters(forum.params, 2_000).items():
        with pytest.raises(SketchError):
            check_filter(bloom, forum.params)
        assert bloom.count > 0, case


def test_poisoned_filters_are_refused_by_the_hub_without_a_trace(poison: PoisonReport) -> None:
    assert len(poison.results) >= 9
    for row in poison.results:
        assert row.check_filter.startswith("rejected: "), row
        assert row.hub_status == "INVALID_ARGUMENT", row
        assert not row.trace_left, row
    assert poison.honest_accepted
