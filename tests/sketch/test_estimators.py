"""Cardinality and intersection estimates against exact set sizes, and their stated errors."""

from __future__ import annotations

import hashlib
import math

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
    intersection_stderr,
    overlap_matrix,
)
from sigshare.sketch.prf import KeyedPRF

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
    expected = -(m / k) * math.log(1 - t / m)  # the large-m form of the paper's estimator
    exact = math.log(1 - t / m) / (k * math.log(1 - 1 / m))  # the module's documented form
    got = estimate_cardinality(m, k, t)
    assert got == pytest.approx(exact, rel=1e-9, abs=1e-9)
    # ln(1 − 1/m) = −1/m − 1/(2m²) − …: the two forms differ by a relative ≤ 1/m.
    assert got == pytest.approx(expected, rel=1.0 / m + 1e-9, abs=1e-9)
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
    #   [ln(m − (t∧·m − t1·t2)/(m − t1 − t2 + t∧)) − ln m] / (k·ln(1 − 1/m)), clipped at 0.
    inner = m - (t_and * m - t1 * t2) / (m - t1 - t2 + t_and)
    paper = (math.log(inner) - math.log(m)) / (k * math.log1p(-1 / m))
    got = estimate_intersection(m, k, t1, t2, t_and)
    assert got == pytest.approx(max(0.0, paper), rel=1e-7, abs=1e-6)
    assert got >= 0.0
    assert got == estimate_intersection(m, k, t2, t1, t_and)  # symmetric in A and B


def test_exact_small_cases() -> None:
    assert estimate_cardinality(640, 7, 0) == 0.0
    assert estimate_cardinality(640, 7, 7) == pytest.approx(1.0, rel=0.01)  # one item, no clash
    assert estimate_intersection(640, 7, 0, 0, 0) == 0.0
    assert estimate_intersection(640, 7, 7, 7, 7) == pytest.approx(
        estimate_cardinality(640, 7, 7), rel=1e-9
    )  # identical filters: |A∩B| = |A|
    assert estimate_intersection(640, 7, 7, 7, 0) == 0.0  # disjoint bits: clipped at 0


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
    lam = k * n / m
    assert cardinality_stderr(m, k, n) == pytest.approx(
        math.sqrt(m * (math.exp(lam) - 1 - lam)) / k, rel=1e-9, abs=1e-12
    )
    # Delta method on t: Var(n̂) = Var(t)·(dn̂/dt)² with Var(t) the occupancy variance that
    # fill_stddev states and dn̂/dt = 1/(k·e^(−λ)) (large m): the two modules agree.
    via_fill = SMALL.fill_stddev(n) * m / (k * math.exp(-lam))
    assert cardinality_stderr(m, k, n) == pytest.approx(via_fill, rel=1e-3, abs=1e-9)


@pytest.mark.parametrize(
    ("n_a", "n_b", "n_ab"),
    [(1_500, 1_200, 600), (2_000, 2_000, 0), (500, 1_800, 100), (50, 50, 50)],
)
def test_intersection_stderr_is_the_documented_delta_method(n_a: int, n_b: int, n_ab: int) -> None:
    m, k = SMALL.m, SMALL.k
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
    # Analytic gradient of n̂ = [ln(1−fa) + ln(1−fb) − ln(1 − fa − fb + f∧)] / (k·ln(1 − 1/m)).
    union_zero = 1 - pa - pb + pand
    gradient = (
        np.array([-1 / (1 - pa) + 1 / union_zero, -1 / (1 - pb) + 1 / union_zero, -1 / union_zero])
        / keep
    )
    # Independent-bit variance minus the intersection's fixed-count (Poissonisation) term n∩/k.
    expected = math.sqrt(float(gradient @ cov @ gradient) / m - n_ab / k)
    got = intersection_stderr(m, k, n_a, n_b, n_ab)
    assert got == pytest.approx(expected, rel=1e-4)  # central differences, step 1e-7
    assert intersection_stderr(m, k, n_b, n_a, n_ab) == pytest.approx(got, rel=1e-6)


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
# P(χ²₂₉ > 29·2.25) ≈ 1e-4 even if the stated error were exact (it is conservative), and 4×
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
