"""Cardinality and intersection estimates against exact set sizes, their stated errors, and the
false-shared probability against brute force and real filters."""

from __future__ import annotations

import hashlib
import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sigshare.sketch.bloom import BloomFilter, BloomParams, KeyedBloomFilter, and_popcount
from sigshare.sketch.errors import ParameterError
from sigshare.sketch.estimators import (
    cardinality_stderr,
    estimate_cardinality,
    estimate_intersection,
    false_shared_probability,
    intersection_stderr,
    overlap_matrix,
    unset_moments,
)
from sigshare.sketch.prf import KeyedPRF
from tests.support.oracles import occupancy_distribution

KEY = bytes(range(32))
PROPERTY = settings(derandomize=True, deadline=None, max_examples=200)
SMALL = BloomParams.for_capacity("email", "forum-1", 2_000, 0.01)  # m = 19_200, k = 7
LARGE = BloomParams.for_capacity("email", "forum-1", 20_000, 0.01)  # m = 191_744, k = 7
REPETITIONS = 30


def rep_key(repetition: int) -> bytes:
    return hashlib.sha256(f"estimator repetition {repetition}".encode()).digest()


def two_sets(n_a: int, n_b: int, n_ab: int) -> tuple[list[str], list[str]]:
    """A = items 0..n_a−1, B = the last n_ab of A plus n_b − n_ab fresh items."""
    a = [f"item{i}" for i in range(n_a)]
    b = [f"item{i}" for i in range(n_a - n_ab, n_a - n_ab + n_b)]
    assert len(set(a) & set(b)) == n_ab
    return a, b


def filters_for(params: BloomParams, key: bytes, *sets: list[str]) -> list[KeyedBloomFilter]:
    prf = KeyedPRF(key)
    out = []
    for items in sets:
        bloom = KeyedBloomFilter(params, prf)
        bloom.add(items)
        out.append(bloom)
    return out


def intersection_of(params: BloomParams, a: BloomFilter, b: BloomFilter) -> float:
    return estimate_intersection(
        params.m, params.k, a.set_bits(), b.set_bits(), and_popcount(a.bits, b.bits)
    )


# ----------------------------------------------------------------------------- formulas


@PROPERTY
@given(m_words=st.integers(1, 5_000), k=st.integers(1, 20), data=st.data())
def test_cardinality_is_swamidass_baldi(m_words: int, k: int, data: st.DataObject) -> None:
    m = 64 * m_words
    t = data.draw(st.integers(0, m - 1))
    # Distinct positions: E[unset bits] = m·(1 − k/m)ⁿ exactly, inverted.
    exact = math.log(1 - t / m) / math.log(1 - k / m)
    large_m = -(m / k) * math.log(1 - t / m)  # the paper's large-m form
    got = estimate_cardinality(m, k, t)
    assert got == pytest.approx(exact, rel=1e-9, abs=1e-9)
    # ln(1 − k/m) = −k/m·(1 + k/(2m) + …): the two forms differ by a relative ≤ k/m.
    assert got == pytest.approx(large_m, rel=k / m + 1e-9, abs=1e-9)
    assert got >= 0.0


@PROPERTY
@given(m_words=st.integers(1, 5_000), k=st.integers(1, 20), data=st.data())
def test_intersection_is_papapetrou(m_words: int, k: int, data: st.DataObject) -> None:
    m = 64 * m_words
    t1 = data.draw(st.integers(0, m - 1))
    t2 = data.draw(st.integers(0, m - 1))
    low = max(0, t1 + t2 - m + 1)  # union below m: not saturated
    if low > min(t1, t2):
        return
    t_and = data.draw(st.integers(low, min(t1, t2)))
    # Papapetrou et al. 2010, eq. (7): S⁻¹(t∧, t1, t2) =
    #   [ln(m − (t∧·m − t1·t2)/(m − t1 − t2 + t∧)) − ln m] / (k·ln(1 − 1/m)), clipped at 0,
    # with the per-item log-miss ln(1 − k/m) of distinct positions in place of k·ln(1 − 1/m).
    inner = m - (t_and * m - t1 * t2) / (m - t1 - t2 + t_and)
    paper = (math.log(inner) - math.log(m)) / math.log1p(-k / m)
    got = estimate_intersection(m, k, t1, t2, t_and)
    assert got == pytest.approx(max(0.0, paper), rel=1e-7, abs=1e-6)
    assert got >= 0.0
    assert got == estimate_intersection(m, k, t2, t1, t_and)  # symmetric in A and B


def test_exact_small_cases() -> None:
    assert estimate_cardinality(640, 7, 0) == 0.0
    # One item sets exactly k distinct bits: ln(1 − 7/640)/ln(1 − 7/640) = 1.
    assert estimate_cardinality(640, 7, 7) == pytest.approx(1.0, rel=1e-12)
    assert estimate_intersection(640, 7, 0, 0, 0) == 0.0
    assert estimate_intersection(640, 7, 7, 7, 7) == pytest.approx(1.0, rel=1e-12)
    assert estimate_intersection(640, 7, 7, 7, 0) == 0.0  # disjoint bits: clipped at 0


def test_k_equal_to_m() -> None:
    # One item sets every bit: empty or full, and a full filter holds an unknown count.
    assert estimate_cardinality(64, 64, 0) == 0.0
    assert estimate_cardinality(64, 64, 64) == math.inf
    assert estimate_intersection(64, 64, 0, 0, 0) == 0.0
    assert estimate_intersection(64, 64, 64, 64, 64) == math.inf
    assert cardinality_stderr(64, 64, 0) == 0.0
    assert cardinality_stderr(64, 64, 1) == math.inf
    assert intersection_stderr(64, 64, 2, 2, 1) == math.inf


@pytest.mark.parametrize(("m", "k"), [(640, 0), (640, -1), (64, 65)])
def test_estimators_refuse_impossible_k(m: int, k: int) -> None:
    with pytest.raises(ParameterError, match="k ≤ m"):
        estimate_cardinality(m, k, 0)
    with pytest.raises(ParameterError, match="k ≤ m"):
        estimate_intersection(m, k, 0, 0, 0)
    with pytest.raises(ParameterError, match="k ≤ m"):
        cardinality_stderr(m, k, 1)
    with pytest.raises(ParameterError, match="k ≤ m"):
        intersection_stderr(m, k, 1, 1, 1)


def test_saturated_filters_give_inf() -> None:
    assert estimate_cardinality(640, 7, 640) == math.inf
    assert estimate_intersection(640, 7, 640, 10, 10) == math.inf
    assert estimate_intersection(640, 7, 10, 640, 10) == math.inf
    # Union saturated (disjoint halves): the denominator m − t1 − t2 + t∧ is 0.
    assert estimate_intersection(640, 7, 320, 320, 0) == math.inf
    # A filter really filled by far too many items:
    bloom = filters_for(BloomParams.for_capacity("email", "f", 64, 0.01), KEY, _items(2_000))[0]
    assert bloom.set_bits() == bloom.params.m
    assert estimate_cardinality(bloom.params.m, bloom.params.k, bloom.set_bits()) == math.inf
    assert overlap_matrix([bloom, bloom])[0, 1] == math.inf


def _items(n: int) -> list[str]:
    return [f"item{i}" for i in range(n)]


@pytest.mark.parametrize("bits", [-1, 641])
def test_cardinality_refuses_impossible_counts(bits: int) -> None:
    with pytest.raises(ParameterError):
        estimate_cardinality(640, 7, bits)


@pytest.mark.parametrize(
    ("a", "b", "both"), [(10, 10, 11), (5, 10, 6), (641, 10, 5), (10, 641, 5), (10, 10, -1)]
)
def test_intersection_refuses_inconsistent_counts(a: int, b: int, both: int) -> None:
    with pytest.raises(ParameterError, match="inconsistent"):
        estimate_intersection(640, 7, a, b, both)


@pytest.mark.parametrize(("n_a", "n_b", "n_ab"), [(10, 20, 11), (20, 10, 11), (10, 10, -1)])
def test_intersection_stderr_refuses_impossible_sizes(n_a: int, n_b: int, n_ab: int) -> None:
    with pytest.raises(ParameterError):
        intersection_stderr(640, 7, n_a, n_b, n_ab)


@pytest.mark.parametrize("n", [0, 1, 500, 2_000, 5_000])
def test_cardinality_stderr_formula(n: int) -> None:
    m, k = SMALL.m, SMALL.k
    q = 1 - k / m
    # Delta method on the unset count U: sd(n̂) = sd(U)/(E[U]·|ln q|), sd(U) = fill_stddev·m.
    via_fill = SMALL.fill_stddev(n) * m / (m * q**n * -math.log(q))
    assert cardinality_stderr(m, k, n) == pytest.approx(via_fill, rel=1e-9, abs=1e-12)
    # Large m, many items: sqrt(m(e^λ − 1 − λ))/k with λ = kn/m, the old Poissonised form.
    if n >= 500:
        lam = k * n / m
        large_m = math.sqrt(m * (math.exp(lam) - 1 - lam)) / k
        assert cardinality_stderr(m, k, n) == pytest.approx(large_m, rel=1e-3)
    if n == 1:
        assert cardinality_stderr(m, k, n) == pytest.approx(0.0, abs=1e-6)  # exactly k bits


@pytest.mark.parametrize(("m", "k", "n"), [(640, 7, 20), (640, 7, 50), (640, 7, 90), (640, 3, 150)])
def test_cardinality_stderr_against_the_exact_law(m: int, k: int, n: int) -> None:
    # The exact law of the set-bit count gives the exact mean and sd of n̂ = f(U) (saturation
    # has probability < 1e-100 here). The delta method keeps the first term of the expansion of
    # f(u) = ln(u/m)/ln q around μ = E[U]; the next ones change the sd by a relative
    # O(μ₃/(μ·σ²) + σ²/μ²) (μ₃: third central moment of U, about σ² for nearly Poisson
    # collision counts), so allow 3/μ. The bias is f''·σ²/2 = σ²/(2μ²·|ln q|); allow twice it.
    law = occupancy_distribution(m, k, n)
    set_bits = np.arange(m)
    estimates = np.array([estimate_cardinality(m, k, int(t)) for t in set_bits])
    assert law[m] < 1e-100
    mean = float(law[:m] @ estimates)
    exact_sd = math.sqrt(float(law[:m] @ (estimates - mean) ** 2))
    mu = m * (1 - k / m) ** n
    sigma2 = (BloomParams("email", "f", m, k, 1, 0.5).fill_stddev(n) * m) ** 2
    assert cardinality_stderr(m, k, n) == pytest.approx(exact_sd, rel=3 / mu)
    assert abs(mean - n) <= sigma2 / (mu**2 * -math.log1p(-k / m))


def enumerated_unset_moments(
    m: int, k: int, only_a: int, only_b: int, both: int
) -> tuple[list[Fraction], list[list[Fraction]]]:
    """Means and covariances of (U_A, U_B, U_union) over every assignment of k-subsets to
    items."""
    subsets = [frozenset(c) for c in itertools.combinations(range(m), k)]
    sums = [Fraction(0)] * 3
    products = [[Fraction(0)] * 3 for _ in range(3)]
    outcomes = 0
    for choice in itertools.product(subsets, repeat=only_a + only_b + both):
        a_items = choice[:only_a] + choice[only_a + only_b :]
        b_items = choice[only_a:]
        unset = (
            m - len(frozenset().union(*a_items)),
            m - len(frozenset().union(*b_items)),
            m - len(frozenset().union(*choice)),
        )
        for i in range(3):
            sums[i] += unset[i]
            for j in range(3):
                products[i][j] += unset[i] * unset[j]
        outcomes += 1
    means = [total / outcomes for total in sums]
    covariance = [
        [products[i][j] / outcomes - means[i] * means[j] for j in range(3)] for i in range(3)
    ]
    return means, covariance


@pytest.mark.parametrize(
    ("m", "k", "only_a", "only_b", "both"),
    [(5, 2, 1, 1, 1), (5, 2, 0, 2, 1), (4, 1, 2, 1, 0), (6, 3, 1, 0, 2), (4, 2, 1, 1, 1)],
)
def test_unset_moments_by_enumeration(m: int, k: int, only_a: int, only_b: int, both: int) -> None:
    means, covariance = unset_moments(m, k, only_a + both, only_b + both, both)
    exact_means, exact_covariance = enumerated_unset_moments(m, k, only_a, only_b, both)
    assert means.tolist() == pytest.approx([float(x) for x in exact_means], rel=1e-12)
    for i in range(3):
        for j in range(3):
            assert covariance[i, j] == pytest.approx(
                float(exact_covariance[i][j]), rel=1e-9, abs=1e-12
            )


@pytest.mark.parametrize(
    ("n_a", "n_b", "n_ab"),
    [(1_500, 1_200, 600), (2_000, 2_000, 0), (500, 1_800, 100), (50, 50, 50), (100, 100, 50)],
)
def test_intersection_stderr_is_the_documented_delta_method(n_a: int, n_b: int, n_ab: int) -> None:
    m, k = SMALL.m, SMALL.k
    log_q = math.log1p(-k / m)
    rho = 1 - k / ((m - 1) * (m - k))  # two given bits both escape an item: q²·rho

    def covariance(n_s: float, n_t: float, shared: float) -> float:
        union = n_s + n_t - shared
        return m * math.exp(union * log_q) * (1 - math.exp(shared * log_q)) + m * (
            m - 1
        ) * math.exp((n_s + n_t) * log_q) * (rho**shared - 1)

    union = n_a + n_b - n_ab
    sizes = (n_a, n_b, union)
    shared = ((n_a, n_ab, n_a), (n_ab, n_b, n_b), (n_a, n_b, union))
    sigma = np.array(
        [[covariance(sizes[i], sizes[j], shared[i][j]) for j in range(3)] for i in range(3)]
    )
    means = np.array([m * math.exp(size * log_q) for size in sizes])
    # n̂∩ = [ln U_A + ln U_B − ln U_union − ln m]/ln q: its gradient is
    # (1/μ_A, 1/μ_B, −1/μ_union)/ln q.
    gradient = np.array([1 / means[0], 1 / means[1], -1 / means[2]]) / log_q
    expected = math.sqrt(float(gradient @ sigma @ gradient))
    got = intersection_stderr(m, k, n_a, n_b, n_ab)
    # The float formula above loses digits in rho^shared − 1 (rho = 1 − 2e-8): rel 1e-5.
    assert got == pytest.approx(expected, rel=1e-5)
    assert intersection_stderr(m, k, n_b, n_a, n_ab) == pytest.approx(got, rel=1e-9)


@pytest.mark.parametrize("n", [1, 50, 500, 2_000])
def test_intersection_stderr_of_a_set_with_itself_is_the_cardinality_stderr(n: int) -> None:
    # A = B: U_A = U_B = U_union, so n̂∩ = ln(U_A/m)/ln q = n̂.
    m, k = SMALL.m, SMALL.k
    assert intersection_stderr(m, k, n, n, n) == pytest.approx(
        cardinality_stderr(m, k, n), rel=1e-6, abs=1e-6
    )


def test_stderr_agrees_with_the_poissonised_form_at_large_m() -> None:
    # The previous (with-replacement, Poissonised) delta method: per-bit multinomial
    # covariances minus n∩/k. Both describe the same estimator to O(1/n + k/m).
    m, k, n_a, n_b, n_ab = LARGE.m, LARGE.k, 15_000, 12_000, 6_000
    keep = k * math.log1p(-1 / m)
    za, zb, zab = (math.exp(keep * n) for n in (n_a, n_b, n_ab))
    pa, pb = 1 - za, 1 - zb
    pand = 1 - za - zb + za * zb / zab
    cov = np.array(
        [
            [pa * (1 - pa), pand - pa * pb, pand * (1 - pa)],
            [pand - pa * pb, pb * (1 - pb), pand * (1 - pb)],
            [pand * (1 - pa), pand * (1 - pb), pand * (1 - pand)],
        ]
    )
    union_zero = 1 - pa - pb + pand
    gradient = (
        np.array([-1 / (1 - pa) + 1 / union_zero, -1 / (1 - pb) + 1 / union_zero, -1 / union_zero])
        / keep
    )
    poissonised = math.sqrt(float(gradient @ cov @ gradient) / m - n_ab / k)
    assert intersection_stderr(m, k, n_a, n_b, n_ab) == pytest.approx(poissonised, rel=1e-3)


# ----------------------------------------------------------------------------- accuracy


@pytest.mark.parametrize("n", [1, 100, 1_000, 2_000, 3_000])
def test_cardinality_estimate_within_five_stderr(n: int) -> None:
    bloom = filters_for(SMALL, KEY, _items(n))[0]
    estimate = estimate_cardinality(SMALL.m, SMALL.k, bloom.set_bits())
    assert abs(estimate - n) <= 5 * cardinality_stderr(SMALL.m, SMALL.k, n) + 0.5


@pytest.mark.parametrize(
    ("params", "n_a", "n_b", "n_ab"),
    [
        (SMALL, 1_500, 1_200, 600),
        (SMALL, 2_000, 2_000, 0),
        (SMALL, 2_000, 2_000, 2_000),
        (SMALL, 500, 1_800, 100),
        (SMALL, 1_000, 1_000, 50),
        (LARGE, 15_000, 12_000, 6_000),
        (LARGE, 20_000, 5_000, 5_000),
        (LARGE, 10_000, 10_000, 0),
        (LARGE, 3_000, 19_000, 1_000),
    ],
)
def test_estimates_within_five_stderr_of_exact_sizes(
    params: BloomParams, n_a: int, n_b: int, n_ab: int
) -> None:
    a_items, b_items = two_sets(n_a, n_b, n_ab)
    a, b = filters_for(params, KEY, a_items, b_items)
    m, k = params.m, params.k
    assert abs(estimate_cardinality(m, k, a.set_bits()) - n_a) <= 5 * cardinality_stderr(m, k, n_a)
    assert abs(estimate_cardinality(m, k, b.set_bits()) - n_b) <= 5 * cardinality_stderr(m, k, n_b)
    error = intersection_of(params, a, b) - n_ab
    assert abs(error) <= 5 * intersection_stderr(m, k, n_a, n_b, n_ab)


# ----------------------------------------------------------------------------- stated errors


def repeated_estimates(
    params: BloomParams, n_a: int, n_b: int, n_ab: int
) -> tuple[np.ndarray, np.ndarray]:
    """Cardinality of A and |A∩B| estimated under REPETITIONS independent keys."""
    a_items, b_items = two_sets(n_a, n_b, n_ab)
    cardinalities, intersections = [], []
    for repetition in range(REPETITIONS):
        a, b = filters_for(params, rep_key(repetition), a_items, b_items)
        cardinalities.append(estimate_cardinality(params.m, params.k, a.set_bits()))
        intersections.append(intersection_of(params, a, b))
    return np.array(cardinalities), np.array(intersections)


# With 30 repetitions the sample sd has relative sd ≈ 1/sqrt(2·29) ≈ 13%: 1.5× stated is
# P(χ²₂₉ > 29·2.25) ≈ 1e-4 even if the stated error were exact, and 4×
# looseness would need a sample sd below 0.25·σ, P(χ²₂₉ < 29/16) < 1e-12.
@pytest.mark.parametrize(
    ("n_a", "n_b", "n_ab"), [(1_500, 1_200, 600), (2_000, 2_000, 100), (1_000, 1_000, 50)]
)
def test_stated_errors_match_empirical_spread(n_a: int, n_b: int, n_ab: int) -> None:
    m, k = SMALL.m, SMALL.k
    cardinalities, intersections = repeated_estimates(SMALL, n_a, n_b, n_ab)
    card_sd = float(np.std(cardinalities, ddof=1))
    card_stated = cardinality_stderr(m, k, n_a)
    assert card_sd <= 1.5 * card_stated
    assert card_stated <= 2.0 * card_sd  # the occupancy formula is tight, not just an upper bound
    inter_sd = float(np.std(intersections, ddof=1))
    inter_stated = intersection_stderr(m, k, n_a, n_b, n_ab)
    assert inter_sd <= 1.5 * inter_stated
    assert inter_stated <= 4.0 * inter_sd
    # The estimators are (nearly) unbiased: the mean is within 5 standard errors of the mean.
    assert abs(float(cardinalities.mean()) - n_a) <= 5 * card_sd / math.sqrt(REPETITIONS)
    assert abs(float(intersections.mean()) - n_ab) <= 5 * inter_stated / math.sqrt(REPETITIONS)


def test_intersection_stderr_not_absurdly_loose_at_low_fill() -> None:
    _, intersections = repeated_estimates(SMALL, 100, 100, 50)
    stated = intersection_stderr(SMALL.m, SMALL.k, 100, 100, 50)
    assert stated <= 4.0 * float(np.std(intersections, ddof=1))


# ----------------------------------------------------------------------------- overlap matrix


def test_overlap_matrix() -> None:
    sizes = [(0, 1_500), (1_000, 2_500), (2_000, 3_000), (5_000, 5_800)]  # item index ranges
    sets = [[f"item{i}" for i in range(lo, hi)] for lo, hi in sizes]
    filters: list[BloomFilter] = list(filters_for(SMALL, KEY, *sets))
    matrix = overlap_matrix(filters)
    m, k = SMALL.m, SMALL.k
    assert matrix.shape == (4, 4)
    assert np.array_equal(matrix, matrix.T)
    for i, a in enumerate(filters):
        assert matrix[i, i] == estimate_cardinality(m, k, a.set_bits())
        for j, b in enumerate(filters):
            if i != j:
                assert matrix[i, j] == intersection_of(SMALL, a, b)
                exact = len(set(sets[i]) & set(sets[j]))
                stderr = intersection_stderr(m, k, len(sets[i]), len(sets[j]), exact)
                assert abs(matrix[i, j] - exact) <= 5 * stderr
        stderr = cardinality_stderr(m, k, len(sets[i]))
        assert abs(matrix[i, i] - len(sets[i])) <= 5 * stderr


def test_overlap_matrix_edges() -> None:
    assert overlap_matrix([]).shape == (0, 0)
    single = filters_for(SMALL, KEY, _items(10))
    assert overlap_matrix(list(single)).shape == (1, 1)
    other = BloomFilter(BloomParams.for_capacity("email", "forum-1", 2_001, 0.01))
    with pytest.raises(ParameterError, match="different parameters"):
        overlap_matrix([single[0], other])


# ----------------------------------------------------------------------------- false shared

RATES = st.one_of(st.just(0.0), st.just(1.0), st.floats(1e-6, 1 - 1e-6))


def brute_force_tail(fprs: list[float], needed: int) -> Fraction:
    """Σ over every subset of at least ``needed`` events of Π p (in) · Π (1 − p) (out), exactly."""
    rates = [Fraction(p) for p in fprs]
    total = Fraction(0)
    for happened in itertools.product((False, True), repeat=len(rates)):
        if sum(happened) >= needed:
            term = Fraction(1)
            for rate, hit in zip(rates, happened, strict=True):
                term *= rate if hit else 1 - rate
            total += term
    return total


@settings(derandomize=True, deadline=None, max_examples=200)
@given(fprs=st.lists(RATES, max_size=9), needed=st.integers(-2, 12))
def test_false_shared_probability_against_brute_force(fprs: list[float], needed: int) -> None:
    got = false_shared_probability(fprs, needed)
    exact = brute_force_tail(fprs, needed)
    # Sums of non-negative products: relative rounding ≤ (2·len + 2)·2⁻⁵³ ≈ 3e-15.
    assert got == pytest.approx(float(exact), rel=1e-12, abs=0.0)
    assert 0.0 <= got <= 1.0


def test_false_shared_probability_edges() -> None:
    assert false_shared_probability([], 0) == 1.0
    assert false_shared_probability([0.3, 0.2], 0) == 1.0
    assert false_shared_probability([0.3, 0.2], -1) == 1.0
    assert false_shared_probability([0.3, 0.2], 3) == 0.0
    assert false_shared_probability([], 1) == 0.0
    assert false_shared_probability([1.0, 1.0, 0.0], 2) == 1.0
    assert false_shared_probability([1.0, 1.0, 0.0], 3) == 0.0
    assert false_shared_probability([0.3, 0.2], 1) == pytest.approx(1 - 0.7 * 0.8, rel=1e-15)
    assert false_shared_probability([0.3, 0.2], 2) == pytest.approx(0.06, rel=1e-15)
    assert false_shared_probability((0.5,) * 3, 2) == pytest.approx(0.5, rel=1e-15)


@pytest.mark.parametrize("fprs", [[0.1, -0.1], [1.5], [math.nan], [0.2, math.inf]])
def test_false_shared_probability_refuses_non_probabilities(fprs: list[float]) -> None:
    with pytest.raises(ParameterError, match="probabilities"):
        false_shared_probability(fprs, 1)


@pytest.mark.parametrize(("others", "needed"), [(249, 1), (249, 2), (249, 5), (30, 30), (10, 4)])
def test_false_shared_probability_equal_rates_is_the_binomial_tail(
    others: int, needed: int
) -> None:
    p = 4e-5
    exact = sum(
        Fraction(math.comb(others, j)) * Fraction(p) ** j * (1 - Fraction(p)) ** (others - j)
        for j in range(needed, others + 1)
    )
    # Deep tails (≈ 1e-132 for 30 of 30) keep their relative precision: no cancellation.
    assert false_shared_probability([p] * others, needed) == pytest.approx(float(exact), rel=1e-12)


@pytest.mark.parametrize(
    ("capacity", "forum_fpr", "members"), [(20_000, 0.01, 5), (1_000, 0.05, 250)]
)
def test_for_forum_bounds_the_false_shared_rate_at_quorum_2(
    capacity: int, forum_fpr: float, members: int
) -> None:
    params = BloomParams.for_forum("email", "forum-1", capacity, forum_fpr, members)
    per_filter = params.fpr_at_fill(params.expected_fill(capacity))
    others = [per_filter] * (members - 1)
    # Quorum 2: one other filter's false positive suffices; the union bound gives the forum
    # rate up to the rounding of m and k (see test_bloom: at most exp(0.054/(k − ½) + k²/m)).
    slack = math.exp(0.054 / (params.k - 0.5) + params.k**2 / params.m)
    assert false_shared_probability(others, 1) <= forum_fpr * slack
    assert false_shared_probability(others, 1) <= (members - 1) * per_filter
    # Higher quorums are rarer: about C(M − 1, 2)·p² for quorum 3.
    assert false_shared_probability(others, 2) <= math.comb(members - 1, 2) * per_filter**2


def test_false_shared_rate_of_real_filters() -> None:
    # Four other members' filters at capacity (target 0.1, so events are frequent), probed with
    # Q values none of them holds. The number of filters containing a probe is a sum of
    # containment events, and false_shared_probability assumes they are independent with
    # rates fpr_at_fill(fill_j).
    #
    # Oracle given the filters: a probe's k distinct positions all land in the bits set in
    # every filter of a group S with probability P_S = fpr_at_fill(popcount(AND_S)/m) (the
    # hypergeometric form), so by inclusion–exclusion
    #     P(at least r) = Σ_{|S| ≥ r} (−1)^(|S| − r)·C(|S| − 1, r − 1)·P_S.
    # 1. The measured count is Binomial(Q, P(at least r)) given the filters: 6σ band.
    # 2. The independent model differs from the oracle only through popcount(AND_S) versus
    #    m·Π fill_j: independent filters overlap like independent bits, up to the AND's
    #    sampling noise, relative sd sqrt((1 − π)/(m·π)) (π = Π fill_j), which moves P_S ∝
    #    popcount^k by k times that. P(at least r) is dominated by the groups of exactly r
    #    (larger ones are ≈ 0.1 times smaller each), whose π ≥ (smallest fill)^r: allow 6σ.
    #    (r = 1 has no noise at all: single filters enter both sides alike.)
    params = BloomParams.for_capacity("email", "forum-1", 20_000, 0.1)  # m = 95_872, k = 3
    m, k = params.m, params.k
    rng = np.random.default_rng(41)
    filters = []
    for _ in range(4):
        bloom = BloomFilter(params)
        bloom.add_tokens(rng.integers(0, 2**64, size=(20_000, 2), dtype=np.uint64))
        filters.append(bloom)
    queries = 400_000
    probes = rng.integers(0, 2**64, size=(queries, 2), dtype=np.uint64)
    holding = np.sum([bloom.contains_tokens(probes) for bloom in filters], axis=0)
    fills = [bloom.fill() for bloom in filters]
    model_rates = [params.fpr_at_fill(fill) for fill in fills]
    group_rate = {}
    for size in range(1, 5):
        for group in itertools.combinations(range(4), size):
            common = filters[group[0]].bits.copy()
            for member in group[1:]:
                np.bitwise_and(common, filters[member].bits, out=common)
            group_rate[group] = params.fpr_at_fill(int(np.unpackbits(common).sum()) / m)
    for needed in range(1, 5):
        oracle = sum(
            (-1) ** (len(group) - needed) * math.comb(len(group) - 1, needed - 1) * rate
            for group, rate in group_rate.items()
            if len(group) >= needed
        )
        measured = int((holding >= needed).sum())
        assert abs(measured - queries * oracle) <= 6 * math.sqrt(queries * oracle) + 1
        model = false_shared_probability(model_rates, needed)
        pi = min(fills) ** max(needed, 2)
        noise = k * math.sqrt((1 - pi) / (m * pi))
        assert model == pytest.approx(oracle, rel=6 * noise)
