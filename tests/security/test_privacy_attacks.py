"""Privacy attacks on the sketches and the hub, with the figures ``python -m bench.attacks``
prints: a secret-less dictionary attack stays at chance level, collusion recovers everything,
a probing member learns nothing below quorum, and poisoned filters are refused without a trace.
See docs/threat-model.md for what each result means.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: bench/

from bench.attacks import (
    ALPHA,
    COLLUSION,
    DENSE,
    FORUM,
    HUB_STRATEGIES,
    DictionaryReport,
    PoisonReport,
    ProbeReport,
    binomial_bound,
    binomial_sf,
    dictionary_attack,
    make_forum,
    poison_attack,
    poison_filters,
    probe_attack,
)

from sigshare.sketch.checks import check_filter
from sigshare.sketch.errors import SketchError


@pytest.fixture(scope="module", params=[FORUM, DENSE], ids=["forum-default", "dense"])
def dictionary(request: pytest.FixtureRequest) -> DictionaryReport:
    return dictionary_attack(request.param)


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> ProbeReport:
    return probe_attack(tmp_path_factory.mktemp("probe"))


@pytest.fixture(scope="module")
def poison(tmp_path_factory: pytest.TempPathFactory) -> PoisonReport:
    return poison_attack(tmp_path_factory.mktemp("poison"))


def test_binomial_bound_is_the_upper_quantile() -> None:
    assert binomial_bound(8_000, 0.0) == 0
    bound = binomial_bound(8_000, 0.01)
    assert binomial_sf(8_000, 0.01, bound + 1) <= ALPHA < binomial_sf(8_000, 0.01, bound)
    assert binomial_sf(10, 0.5, 0) == 1.0


def test_the_dictionary_holds_every_true_value_and_the_filters_pass_the_hub_checks() -> None:
    forum = make_forum(DENSE)
    for name, bloom in forum.filters.items():
        check_filter(bloom, forum.params)
        held = [forum.canonical[i] for i in np.flatnonzero(forum.holdings[name])]
        assert bloom.contains(held).all()
        assert len(held) == DENSE.per_member


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


def test_a_member_without_a_submission_gets_no_resolution_and_cannot_confirm(
    probe: ProbeReport,
) -> None:
    assert probe.no_submission_resolution == "FAILED_PRECONDITION"
    assert probe.no_submission_confirm == "FAILED_PRECONDITION"


def test_probing_learns_nothing_about_values_fewer_than_quorum_members_hold(
    probe: ProbeReport,
) -> None:
    """Quorum 3: the prober's guesses held by 0 or 1 other member resolve to 0 — it cannot tell
    them apart. Guesses held by ≥ 2 others resolve to their exact count: the inherent leak."""
    assert probe.quorum == 3
    by_others = {row.others: row for row in probe.classes}
    for others in (0, 1):
        assert by_others[others].guesses >= 100
        assert by_others[others].resolved_nonzero == 0
    for others in (2, 3):
        assert by_others[others].guesses > 0
        assert by_others[others].resolved_exact == by_others[others].guesses


def test_confirm_refuses_tokens_outside_the_members_own_resolved_items(probe: ProbeReport) -> None:
    offered, accepted = probe.confirm_not_in_filter
    assert offered > 100
    assert accepted == 0
    offered, accepted = probe.confirm_own_unresolved
    assert offered >= 200
    assert accepted == 0
    offered, accepted = probe.confirm_own_resolved
    assert offered > 0
    assert accepted == offered


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
