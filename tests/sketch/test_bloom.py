"""Bloom filters: parameters, bit positions, both insert/query paths, FPR, union and membership."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal, localcontext
from fractions import Fraction
from pathlib import Path
from unittest import mock

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sigshare.sketch.bloom as bloom_module
from sigshare.sketch.bloom import (
    MAX_BITS,
    MAX_FORUM_MEMBERS,
    MAX_HASHES,
    BloomFilter,
    BloomParams,
    KeyedBloomFilter,
    and_popcount,
    bit_positions,
    popcount,
    unset_covariance,
)
from sigshare.sketch.errors import ParameterError
from sigshare.sketch.prf import KeyedPRF, TokenArray, tokens_from_bytes
from tests.support.oracles import occupancy_distribution

KEY = bytes(range(32))
LN2 = math.log(2.0)
PROPERTY = settings(derandomize=True, deadline=None, max_examples=100)
GOLDEN = Path(__file__).resolve().parent.parent / "golden"


def params_for(capacity: int, fpr: float, kind: str = "email") -> BloomParams:
    return BloomParams.for_capacity(kind, "forum-1", capacity, fpr)


def random_tokens(seed: int, n: int) -> TokenArray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 2**64, size=(n, 2), dtype=np.uint64).astype("<u8")


def values(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}@example.com" for i in range(n)]


@contextmanager
def insert_path(path: str) -> Iterator[None]:
    """Force ``add_tokens``/``contains_tokens`` onto one code path.

    The switch is ``n·k·_BOOL_SCATTER_RATIO > m``: a ratio above any ``m`` (2³² + 1) sends every
    non-empty batch to the unpack/scatter/pack path, a ratio of 0 sends every batch to ufunc.at.
    """
    ratio = {"scatter": MAX_BITS + 1, "at": 0}[path]
    with mock.patch.object(bloom_module, "_BOOL_SCATTER_RATIO", ratio):
        yield


def build(params: BloomParams, batches: list[TokenArray], path: str) -> BloomFilter:
    bloom = BloomFilter(params)
    with insert_path(path):
        for batch in batches:
            before = bloom.bits
            bloom.add_tokens(batch)
            if len(batch):
                # Proves which path ran: ufunc.at updates in place, scatter repacks a new array.
                assert bloom.bits is before  # both paths update the array in place
    return bloom


def query(bloom: BloomFilter, tokens: TokenArray, path: str) -> npt.NDArray[np.bool_]:
    with insert_path(path):
        return bloom.contains_tokens(tokens)


def set_bits_reference(bits: npt.NDArray[np.uint8]) -> int:
    return int(np.unpackbits(bits).sum())


# ----------------------------------------------------------------------------- parameters

# (capacity, target FPR, m, k): m and k computed by hand from the textbook formulas
# m = ceil(−n·ln p / ln²2) rounded up to a multiple of 64, k = round(m/n · ln 2), 1 ≤ k ≤ 64.
#   1e6 items at 1e-3: 1e6·6.907755/0.480453 = 14_377_587.2 → 14_377_588 → 14_377_600; k = 9.97 → 10
#   20_000 at 1e-2:    20_000·4.605170/0.480453 = 191_701.2 → 191_702 → 191_744;  k = 6.64 → 7
PINNED_PARAMS = [
    (1_000_000, 1e-3, 14_377_600, 10),
    (20_000, 1e-2, 191_744, 7),
    (20_000, 1e-3, 287_552, 10),
    (64, 1e-2, 640, 7),
    (1, 0.5, 64, 44),  # 2 bits needed, one word: k = round(64·ln 2) = 44
    (1_000, 0.9, 256, 1),  # textbook k = 0.18 rounds to 0: clamped to 1
    (1, 1e-30, 192, 64),  # textbook k = 133: clamped to MAX_HASHES
    (10_000_000, 1e-4, 191_701_184, 13),
]


@pytest.mark.parametrize(("capacity", "fpr", "m", "k"), PINNED_PARAMS)
def test_for_capacity_matches_textbook_formulas(capacity: int, fpr: float, m: int, k: int) -> None:
    params = params_for(capacity, fpr)
    bits = math.ceil(-capacity * math.log(fpr) / LN2**2)
    textbook_m = math.ceil(bits / 64) * 64
    textbook_k = min(MAX_HASHES, max(1, round(textbook_m / capacity * LN2)))
    assert (params.m, params.k) == (textbook_m, textbook_k) == (m, k)
    assert params.m % 64 == 0
    assert 0 <= params.m - bits < 64
    assert (params.capacity, params.target_fpr) == (capacity, fpr)
    assert params.nbytes == params.m // 8


@pytest.mark.parametrize(("capacity", "fpr"), [(c, p) for c, p, _, k in PINNED_PARAMS if k >= 3])
def test_for_capacity_meets_its_target(capacity: int, fpr: float) -> None:
    params = params_for(capacity, fpr)
    # In the large-m model the FPR at capacity, (1 − e^(−k·n/m))^k, is flat around the optimum
    # k* = m/n·ln 2: d²/dk² [k·ln(1 − e^(−c·k))] = c·0.614 at the optimum (c = n/m = ln 2 / k*),
    # so rounding k by ≤ ½ costs at most ln-ratio ½·(ln 2/k*)·0.614·¼ = 0.053/k*, and
    # k* ≥ k − ½. Rounding m up only helps. Distinct positions only lower the exact FPR
    # C(X, k)/C(m, k) ≤ (X/m)^k, while their fill 1 − (1 − k/m)^n exceeds 1 − e^(−kn/m) by
    # less than e^(−λ)·λ·k/(2m) (λ = kn/m), i.e. the FPR by a factor below exp(k²/(2m))·…:
    # at most exp(k²/m). Hence FPR(capacity) ≤ target·exp(0.054/(k − ½) + k²/m).
    achieved = params.fpr_at_fill(params.expected_fill(capacity))
    assert achieved <= fpr * math.exp(0.054 / (params.k - 0.5) + params.k**2 / params.m)


def test_for_capacity_refuses_more_than_2_32_bits() -> None:
    with pytest.raises(ParameterError, match="2\\^32"):
        params_for(1_000_000_000, 1e-6)


@pytest.mark.parametrize(
    ("capacity", "fpr"), [(0, 0.01), (-5, 0.01), (10, 0.0), (10, 1.0), (10, -0.1), (10, 1.5)]
)
def test_for_capacity_refuses_bad_inputs(capacity: int, fpr: float) -> None:
    with pytest.raises(ParameterError):
        params_for(capacity, fpr)


def test_for_capacity_refuses_nan_fpr() -> None:
    with pytest.raises(ParameterError, match="FPR"):
        params_for(10, math.nan)


@pytest.mark.parametrize(
    ("capacity", "forum_fpr", "members"),
    [(20_000, 0.01, 2), (20_000, 0.01, 5), (20_000, 0.05, 11), (1_000, 0.01, 250), (64, 0.5, 3)],
)
def test_for_forum_is_for_capacity_at_the_per_filter_rate(
    capacity: int, forum_fpr: float, members: int
) -> None:
    params = BloomParams.for_forum("email", "forum-1", capacity, forum_fpr, members)
    per_filter = forum_fpr / (members - 1)
    assert params == BloomParams.for_capacity("email", "forum-1", capacity, per_filter)
    assert params.target_fpr == per_filter
    assert (params.kind, params.key_id, params.capacity) == ("email", "forum-1", capacity)


def test_for_forum_pinned_values() -> None:
    # 20_000 items at 0.01 / 4 = 0.0025: 20_000·5.991465/0.480453 = 249_407.1 → 249_408 →
    # 249_472 bits; k = 249_472/20_000·ln 2 = 8.65 → 9.
    params = BloomParams.for_forum("email", "forum-1", 20_000, 0.01, 5)
    assert (params.m, params.k) == (249_472, 9)


@pytest.mark.parametrize(
    ("forum_fpr", "members", "message"),
    [
        (0.01, 1, "max_members must be between 2 and 250, got 1"),
        (0.01, 0, "max_members must be between 2 and 250, got 0"),
        (0.01, MAX_FORUM_MEMBERS + 1, "max_members must be between 2 and 250, got 251"),
        (0.0, 5, "forum FPR must be in \\(0, 1\\), got 0.0"),
        (1.0, 5, "forum FPR must be in \\(0, 1\\), got 1.0"),
        (-0.5, 5, "forum FPR must be in"),
        (math.nan, 5, "forum FPR must be in"),
    ],
)
def test_for_forum_refuses_bad_inputs(forum_fpr: float, members: int, message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        BloomParams.for_forum("email", "forum-1", 1_000, forum_fpr, members)


def test_for_forum_still_checks_capacity_and_bits() -> None:
    with pytest.raises(ParameterError, match="capacity"):
        BloomParams.for_forum("email", "forum-1", 0, 0.01, 5)
    with pytest.raises(ParameterError, match="2\\^32"):
        BloomParams.for_forum("email", "forum-1", 200_000_000, 1e-3, 250)


@pytest.mark.parametrize(
    ("m", "k", "capacity", "fpr", "field"),
    [
        (0, 3, 10, 0.01, "m must"),
        (63, 3, 10, 0.01, "m must"),
        (100, 3, 10, 0.01, "m must"),
        (MAX_BITS + 64, 3, 10, 0.01, "m must"),
        (-64, 3, 10, 0.01, "m must"),
        (640, 0, 10, 0.01, "k must"),
        (640, MAX_HASHES + 1, 10, 0.01, "k must"),
        (640, 3, 0, 0.01, "capacity"),
        (640, 3, 10, 0.0, "target FPR"),
        (640, 3, 10, 1.0, "target FPR"),
    ],
)
def test_params_validation(m: int, k: int, capacity: int, fpr: float, field: str) -> None:
    with pytest.raises(ParameterError, match=field):
        BloomParams(kind="email", key_id="f", m=m, k=k, capacity=capacity, target_fpr=fpr)


@pytest.mark.parametrize("key_id", ["", "bad id", "a" * 33, "-x", "a/b", "é"])
def test_params_refuse_bad_key_ids(key_id: str) -> None:
    with pytest.raises(ParameterError, match="key id"):
        BloomParams(kind="email", key_id=key_id, m=640, k=7, capacity=64, target_fpr=0.01)
    with pytest.raises(ParameterError, match="key id"):
        BloomParams.for_capacity("email", key_id, 64, 0.01)


def test_params_boundaries_accepted() -> None:
    BloomParams(kind="email", key_id="f", m=MAX_BITS, k=MAX_HASHES, capacity=1, target_fpr=1e-9)
    BloomParams(kind="email", key_id="f", m=64, k=1, capacity=1, target_fpr=0.5)


@PROPERTY
@given(
    words=st.integers(1, 3),
    k=st.integers(1, MAX_HASHES),
    count=st.integers(0, 120),
)
def test_fill_mean_and_stddev_are_the_exact_occupancy_moments(
    words: int, k: int, count: int
) -> None:
    params = BloomParams(kind="email", key_id="f", m=64 * words, k=k, capacity=1, target_fpr=0.5)
    m = params.m
    law = occupancy_distribution(m, k, count)
    set_bits = np.arange(m + 1)
    mean = float(law @ set_bits)
    sd = math.sqrt(float(law @ (set_bits - mean) ** 2))
    # The chain sums ≤ 120 products of m + 1 probabilities: rounding stays near 1e-13.
    assert params.expected_fill(count) * m == pytest.approx(mean, rel=1e-9, abs=1e-9)
    # The closed form cancels two terms of size ≈ m for tiny counts (one item: variance 0).
    assert params.fill_stddev(count) * m == pytest.approx(sd, rel=1e-6, abs=1e-5)


@pytest.mark.parametrize("count", [0, 1, 100, 20_000, 50_000])
def test_expected_fill_and_stddev_closed_forms(count: int) -> None:
    params = params_for(20_000, 0.01)
    m, k = params.m, params.k
    # The textbook forms, evaluated with 80 significant digits: in floats the variance's
    # terms of size m² ≈ 4e10 cancel down to ≈ 1 and lose most of their digits (the module
    # uses expm1/log1p instead).
    with localcontext() as context:
        context.prec = 80
        q = (Decimal(m) - k) / m  # one bit escapes one item
        two_bits = q * (Decimal(m - 1) - k) / (m - 1)  # two given bits both escape one item
        unset = m * q**count
        fill = 1 - q**count
        variance = unset + m * (m - 1) * two_bits**count - unset**2
        sd = variance.sqrt()
    assert params.expected_fill(count) == pytest.approx(float(fill), rel=1e-12, abs=1e-300)
    assert params.fill_stddev(count) * m == pytest.approx(float(sd), rel=1e-6, abs=1e-4)
    # The Poisson occupancy variance m·e^(−λ)·(1 − (1 + λ)·e^(−λ)), λ = kn/m, of hashes that
    # may collide is the limit. At low fill the variance is that of the number of colliding
    # hash pairs; the Poisson form counts all (kn)²/2 pairs, distinct positions only the
    # k²·n(n − 1)/2 pairs from different items: sd smaller by ≈ 1/(2n), plus O(k/m).
    if count > 1:
        lam = k * count / m
        poisson = m * math.exp(-lam) * (1 - (1 + lam) * math.exp(-lam))
        ratio = params.fill_stddev(count) * m / math.sqrt(poisson)
        assert ratio == pytest.approx(1 - 1 / (2 * count), abs=1e-4)


def test_one_item_sets_exactly_k_bits() -> None:
    params = params_for(100, 0.01)
    assert params.expected_fill(1) * params.m == pytest.approx(params.k, rel=1e-12)
    assert params.fill_stddev(1) * params.m == pytest.approx(0.0, abs=1e-5)
    for seed in range(20):
        bloom = BloomFilter(params)
        bloom.add_tokens(random_tokens(seed, 1))
        assert bloom.set_bits() == params.k


def test_fill_edges() -> None:
    params = params_for(100, 0.01)
    assert params.expected_fill(0) == 0.0
    assert params.fill_stddev(0) == 0.0
    assert params.fpr_at_fill(0.0) == 0.0
    assert params.fpr_at_fill(1.0) == 1.0
    assert params.expected_fill(10**9) == pytest.approx(1.0)
    every_bit = BloomParams(kind="email", key_id="f", m=64, k=64, capacity=1, target_fpr=0.5)
    assert every_bit.expected_fill(0) == 0.0
    assert every_bit.expected_fill(1) == every_bit.expected_fill(5) == 1.0
    assert every_bit.fill_stddev(0) == every_bit.fill_stddev(3) == 0.0
    almost = BloomParams(kind="email", key_id="f", m=64, k=63, capacity=1, target_fpr=0.5)
    law = occupancy_distribution(64, 63, 2)
    assert almost.fill_stddev(2) * 64 == pytest.approx(
        math.sqrt(float(law @ (np.arange(65) - law @ np.arange(65)) ** 2)), rel=1e-9
    )


@PROPERTY
@given(words=st.integers(1, 4), k=st.integers(1, MAX_HASHES), data=st.data())
def test_fpr_at_fill_is_the_hypergeometric_probability(
    words: int, k: int, data: st.DataObject
) -> None:
    m = 64 * words
    params = BloomParams(kind="email", key_id="f", m=m, k=k, capacity=1, target_fpr=0.5)
    set_bits = data.draw(st.integers(0, m))
    exact = Fraction(math.comb(set_bits, k), math.comb(m, k))  # all k distinct bits are set
    got = params.fpr_at_fill(set_bits / m)
    assert got == pytest.approx(float(exact), rel=1e-12, abs=1e-300)
    assert got <= (set_bits / m) ** k * (1 + 1e-12)  # fill^k is an upper bound


def test_fpr_at_fill_by_enumerating_every_k_subset() -> None:
    # m = 64 bits, 40 of them set (a fixed pattern), k = 3: count the 3-subsets inside the set.
    params = BloomParams(kind="email", key_id="f", m=64, k=3, capacity=1, target_fpr=0.5)
    set_bits = set(range(0, 64, 8)) | set(range(3, 64, 2))
    inside = sum(1 for subset in itertools.combinations(range(64), 3) if set(subset) <= set_bits)
    exact = inside / math.comb(64, 3)
    assert params.fpr_at_fill(len(set_bits) / 64) == pytest.approx(exact, rel=1e-12)


@pytest.mark.parametrize(
    ("m", "k", "n_s", "n_t", "n_shared"),
    [(5, 2, 1, 1, 1), (5, 2, 2, 2, 2), (5, 2, 2, 1, 1), (5, 2, 2, 2, 1), (6, 3, 2, 2, 1),
     (5, 2, 1, 1, 0), (4, 3, 2, 2, 2), (4, 4, 1, 1, 1), (6, 1, 3, 2, 2), (5, 3, 3, 3, 3)],
)  # fmt: skip
def test_unset_covariance_by_enumerating_every_outcome(
    m: int, k: int, n_s: int, n_t: int, n_shared: int
) -> None:
    """Every assignment of k-subsets to the items, exactly (Fractions)."""
    subsets = [frozenset(c) for c in itertools.combinations(range(m), k)]
    only_s, only_t = n_s - n_shared, n_t - n_shared
    items = only_s + only_t + n_shared
    total = Fraction(0)
    sum_s = sum_t = Fraction(0)
    outcomes = 0
    for choice in itertools.product(subsets, repeat=items):
        in_s = choice[:only_s] + choice[only_s + only_t :]
        in_t = choice[only_s:]
        unset_s = m - len(frozenset().union(*in_s))
        unset_t = m - len(frozenset().union(*in_t))
        total += unset_s * unset_t
        sum_s += unset_s
        sum_t += unset_t
        outcomes += 1
    exact = total / outcomes - (sum_s / outcomes) * (sum_t / outcomes)
    got = unset_covariance(m, k, n_s, n_t, n_shared)
    assert got == pytest.approx(float(exact), rel=1e-9, abs=1e-12)


def test_unset_covariance_refuses_impossible_overlap() -> None:
    with pytest.raises(ParameterError, match="shared"):
        unset_covariance(640, 7, 10, 20, 11)


def test_digest_is_sha256_of_canonical_json() -> None:
    params = BloomParams(
        kind="email", key_id="forum-1", m=191_744, k=7, capacity=20_000, target_fpr=0.01
    )
    canonical = (
        b'{"capacity":20000,"format":"sigshare/bloom-params/v2","k":7,'
        b'"key_id":"forum-1","kind":"email","m":191744}'
    )
    assert params.digest() == hashlib.sha256(canonical).digest()
    v1 = canonical.replace(b"/v2", b"/v1")
    assert params.digest() != hashlib.sha256(v1).digest()  # v1 filters never look compatible


def test_digest_changes_with_every_agreed_field_only() -> None:
    base = params_for(20_000, 0.01)
    fields = {"kind": "phone", "key_id": "forum-2", "m": base.m + 64, "k": base.k + 1}
    fields["capacity"] = base.capacity + 1
    digests = {base.digest()}
    for name, value in fields.items():
        changed = BloomParams(**{**_as_dict(base), name: value})
        digests.add(changed.digest())
    assert len(digests) == 1 + len(fields)
    # The target FPR is implied by m and k: not part of the digest.
    same = BloomParams(**{**_as_dict(base), "target_fpr": 0.02})
    assert same.digest() == base.digest()


def _as_dict(params: BloomParams) -> dict[str, object]:
    names = ("kind", "key_id", "m", "k", "capacity", "target_fpr")
    return {name: getattr(params, name) for name in names}


# ----------------------------------------------------------------------------- bit positions


def fmix64(x: int) -> int:
    """MurmurHash3's 64-bit finaliser, in Python integers."""
    mask = 2**64 - 1
    x ^= x >> 33
    x = (x * 0xFF51AFD7ED558CCD) & mask
    x ^= x >> 33
    x = (x * 0xC4CEB9FE1A85EC53) & mask
    return x ^ (x >> 33)


def test_fmix64_is_a_bijection_that_scatters_neighbours() -> None:
    assert fmix64(0) == 0
    sample = [fmix64(x) for x in range(1, 5000)]
    assert len(set(sample)) == len(sample)
    # Consecutive inputs land far apart: on average half of the 64 output bits differ.
    flips = [bin(fmix64(x) ^ fmix64(x + 1)).count("1") for x in range(1, 5000)]
    assert 30 < sum(flips) / len(flips) < 34


def positions_reference(token: bytes, m: int, k: int) -> tuple[list[int], int]:
    """The documented derivation in Python integers: ``(positions, Floyd replacements)``."""
    h1 = int.from_bytes(token[0:8], "little")
    h2 = int.from_bytes(token[8:16], "little")
    positions: list[int] = []
    replaced = 0
    for i in range(k):
        g = fmix64((h1 + i * h2 + (i**3 - i) // 6) % 2**64)
        j = m - k + i
        t = (g * (j + 1)) >> 64  # the high 64 bits of the 128-bit product
        if t in positions:
            positions.append(j)
            replaced += 1
        else:
            positions.append(t)
    return positions, replaced


def test_high_product_identity_holds_at_the_extremes() -> None:
    # ⌊g·c/2⁶⁴⌋ = (a·c + ((b·c) >> 32)) >> 32 with a = g >> 32, b = g mod 2³², c ≤ 2³², and
    # no intermediate above 2⁶⁴ − 1: checked where carries and overflow would show.
    top = 2**64 - 1
    for g in (0, 1, 2**32 - 1, 2**32, top - 2**32, top):
        for c in (1, 2, 2**31, 2**32 - 1, 2**32):
            a, b = g >> 32, g & 0xFFFF_FFFF
            assert a * c <= top
            assert b * c <= top
            assert a * c + ((b * c) >> 32) <= top
            assert (a * c + ((b * c) >> 32)) >> 32 == (g * c) >> 64


M_VALUES = st.one_of(
    st.just(64),
    st.just(MAX_BITS),
    st.integers(1, 4096).map(lambda words: 64 * words),
    st.integers(1, 2**26).map(lambda words: 64 * words),
)


@PROPERTY
@given(
    tokens=st.lists(st.binary(min_size=16, max_size=16), min_size=1, max_size=20),
    m=M_VALUES,
    k=st.integers(1, MAX_HASHES),
)
def test_bit_positions_match_the_reference(tokens: list[bytes], m: int, k: int) -> None:
    out = bit_positions(tokens_from_bytes(tokens), m, k)
    assert out.shape == (k, len(tokens))
    assert out.dtype == np.int64
    assert out.flags.c_contiguous
    for column, token in enumerate(tokens):
        assert out[:, column].tolist() == positions_reference(token, m, k)[0]


@PROPERTY
@given(seed=st.integers(0, 2**32 - 1), m=M_VALUES, k=st.integers(1, MAX_HASHES))
def test_bit_positions_are_k_distinct_values_in_range(seed: int, m: int, k: int) -> None:
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, 2**64, size=(300, 2), dtype=np.uint64)
    tokens[0] = 0  # h1 = h2 = 0
    tokens[1] = np.uint64(2**64 - 1)  # every bit set
    tokens[2, 1] = 0  # h2 = 0: every g_i ≈ h1, Floyd falls back on rows 1 … k−1
    out = bit_positions(tokens, m, k)
    assert ((out >= 0) & (out < m)).all()
    ordered = np.sort(out, axis=0)
    assert (np.diff(ordered, axis=0) > 0).all()  # k distinct positions per token


def test_m_64_and_k_64_gives_every_bit() -> None:
    out = bit_positions(random_tokens(8, 500), 64, 64)
    assert (np.sort(out, axis=0) == np.arange(64)[:, None]).all()


def load_golden_positions() -> list[dict[str, object]]:
    document = json.loads((GOLDEN / "bloom_positions_v2.json").read_text())
    assert document["format"] == "sigshare/bloom-positions/v2"
    cases: list[dict[str, object]] = document["cases"]
    return cases


def test_golden_positions() -> None:
    cases = load_golden_positions()
    tokens = {str(case["name"]): bytes.fromhex(str(case["token"])) for case in cases}
    # The inputs are pinned here as well as in make_golden.py (see tests/golden/README.md).
    assert tokens["all zero"] == bytes(16)
    assert tokens["all 0xFF"] == b"\xff" * 16
    assert tokens["h2 = 0"][8:] == bytes(8)
    assert int.from_bytes(tokens["h2 = 0"][:8], "little") == 0x0123_4567_89AB_CDEF
    assert tokens["h1 = 0"][:8] == bytes(8)
    assert int.from_bytes(tokens["h1 = 0"][8:], "little") == 0xFEDC_BA98_7654_3210
    assert tokens["bytes 0..15"] == bytes(range(16))
    assert tokens["sha256('sigshare')[:16]"] == hashlib.sha256(b"sigshare").digest()[:16]
    shapes = {(case["m"], case["k"]) for case in cases}
    assert {(64, 64), (64, 7), (MAX_BITS, 64), (MAX_BITS, 15)} <= shapes
    assert len(cases) == len(tokens) * len(shapes)
    replacements = 0
    for case in cases:
        token, m, k = tokens[str(case["name"])], int(str(case["m"])), int(str(case["k"]))
        expected = case["positions"]
        assert bit_positions(tokens_from_bytes([token]), m, k)[:, 0].tolist() == expected
        reference, replaced = positions_reference(token, m, k)
        assert reference == expected
        replacements += replaced
    assert replacements > 0  # the golden cases exercise Floyd's replacement branch
    zero_small = next(c for c in cases if c["name"] == "all zero" and c["k"] == 7 and c["m"] == 64)
    # h1 = h2 = 0: the raw sequence (i³ − i)/6 is tiny, and without fmix64 every t_i would be 0
    # and rows 1..6 would fall back to the top positions 58..63; mixed, they spread out.
    assert zero_small["positions"] != [0, 58, 59, 60, 61, 62, 63]


@pytest.mark.parametrize(
    ("m", "k", "message"),
    [(640, 0, "k"), (640, MAX_HASHES + 1, "k"), (MAX_BITS + 64, 7, "2\\^32"), (32, 33, "k")],
)
def test_bit_positions_refuse_impossible_shapes(m: int, k: int, message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        bit_positions(random_tokens(1, 3), m, k)


def test_bit_positions_of_no_tokens() -> None:
    out = bit_positions(random_tokens(1, 0), 640, 7)
    assert out.shape == (7, 0)
    assert out.dtype == np.int64


def chi2_bound(dof: int) -> float:
    """6σ above the mean of a chi-square with ``dof`` degrees of freedom (sd = sqrt(2·dof))."""
    return dof + 6 * math.sqrt(2 * dof)


@pytest.mark.parametrize(
    ("m", "k", "n", "seed"), [(64 * 1000, 7, 20_000, 11), (MAX_BITS, 64, 5_000, 12)]
)
def test_bit_positions_are_near_uniform_across_the_array(m: int, k: int, n: int, seed: int) -> None:
    # 64 cells of m/64 bits. If each token's positions were a uniform k-subset, a token's cell
    # counts would be multivariate hypergeometric: covariance k·f·(diag π − ππᵀ) with
    # f = (m − k)/(m − 1) (sampling without replacement), so Σ (N − E)²/E ≈ f·χ²₆₃ over the n
    # independent tokens. Bound X²/f at 6σ of χ²₆₃.
    positions = bit_positions(random_tokens(seed, n), m, k).ravel()
    counts = np.bincount(positions // (m // 64), minlength=64)
    expected = n * k / 64
    statistic = float(((counts - expected) ** 2 / expected).sum())
    assert statistic / ((m - k) / (m - 1)) <= chi2_bound(63)


def test_pairs_of_positions_are_uniform_pairs() -> None:
    # k = 2: g_0 = h1 and g_1 = h1 + h2 are independent and uniform, so Floyd's sampling gives
    # every 2-subset of [0, m) the same probability 1/C(m, 2) (up to 2⁻⁶⁴ granularity): the
    # C(64, 2) = 2016 pair counts are multinomial, X² ~ χ²₂₀₁₅.
    m, n = 64, 200_000
    positions = np.sort(bit_positions(random_tokens(13, n), m, 2), axis=0)
    cells = positions[0] * m + positions[1]
    counts = np.bincount(cells, minlength=m * m).reshape(m, m)[np.triu_indices(m, 1)]
    expected = n / math.comb(m, 2)
    statistic = float(((counts - expected) ** 2 / expected).sum())
    assert statistic <= chi2_bound(math.comb(m, 2) - 1)


@pytest.mark.parametrize(("m", "k"), [(128, 20), (640, 7), (64, 10), (64, 40)])
def test_every_position_is_equally_likely(m: int, k: int) -> None:
    # fmix64 makes the g_i of one token behave as independent uniform draws, so Floyd's sampling
    # gives a uniform k-subset and every position has probability k/m — the top k − 1 included,
    # although they also collect the fallbacks. (Without the mixing, double hashing's evenly
    # spaced g_i repeat less often than independent draws and the top positions were hit down to
    # ≈ 0.7× as often.) Per-position counts of n tokens are then a multinomial sample of n·k
    # draws without replacement within a token, whose X² against the uniform mean is
    # ≈ (m − k)/(m − 1) · χ²_(m−1).
    n = 100_000
    positions = bit_positions(random_tokens(m + k, n), m, k).ravel()
    counts = np.bincount(positions, minlength=m).astype(np.float64)
    expected = n * k / m
    statistic = float(((counts - expected) ** 2 / expected).sum())
    assert statistic / ((m - k) / (m - 1)) <= chi2_bound(m - 1)
    top = counts[m - k + 1 :]
    assert abs(top.mean() / expected - 1) < 8 * math.sqrt(1 / (expected * len(top)))


# ----------------------------------------------------------------------------- insert paths


@pytest.mark.parametrize(("capacity", "fpr"), [(64, 0.01), (2_000, 0.01), (20_000, 0.001)])
@pytest.mark.parametrize("n", [0, 1, 5, 300, 5_000])
def test_both_insert_paths_set_identical_bits(capacity: int, fpr: float, n: int) -> None:
    params = params_for(capacity, fpr)
    tokens = random_tokens(n + capacity, n)
    one_batch = [tokens]
    several = [tokens[i : i + 37] for i in range(0, n, 37)]
    reference = np.zeros(params.m, dtype=np.uint8)
    reference[bit_positions(tokens, params.m, params.k).ravel()] = 1
    expected = np.packbits(reference, bitorder="little")
    for path, batches in itertools.product(("scatter", "at"), (one_batch, several)):
        bloom = build(params, batches, path)
        assert np.array_equal(bloom.bits, expected), (path, len(batches))
        assert bloom.bits.dtype == np.uint8
        assert bloom.bits.shape == (params.nbytes,)
        assert bloom.count == n


def test_unpatched_threshold_uses_both_paths_with_identical_bits() -> None:
    params = params_for(20_000, 0.01)
    tokens = random_tokens(3, 4_000)
    big = BloomFilter(params)
    big.add_tokens(tokens)  # 4000·7·32 > m: scatter path
    small = BloomFilter(params)
    bits_before = small.bits
    for start in range(0, len(tokens), 100):  # 100·7·32 = 22_400 ≤ m: ufunc.at path
        small.add_tokens(tokens[start : start + 100])
    assert small.bits is bits_before
    assert np.array_equal(big.bits, small.bits)
    assert big.count == small.count == 4_000


@pytest.mark.parametrize("path", ["at", "scatter"])
def test_both_insert_paths_write_through_to_the_callers_array(path: str) -> None:
    params = params_for(2_000, 0.01)
    backing = np.zeros(params.nbytes, dtype=np.uint8)
    bloom = BloomFilter(params, backing)
    with insert_path(path):
        bloom.add_tokens(random_tokens(7, 100))
    assert backing.any()
    assert np.array_equal(backing, bloom.bits)


def test_position_chunking_does_not_change_results() -> None:
    params = params_for(2_000, 0.01)
    tokens = random_tokens(4, 1_000)
    probes = random_tokens(5, 1_000)
    whole = BloomFilter(params)
    whole.add_tokens(tokens)
    expected_hits = whole.contains_tokens(probes)
    expected_positions = bit_positions(probes, params.m, params.k)
    for chunk in (1, 7, 500):  # one token per chunk, a ragged last chunk, exactly n/2
        with mock.patch.object(bloom_module, "_POSITION_CHUNK", chunk):
            assert np.array_equal(bit_positions(probes, params.m, params.k), expected_positions)
            chunked = BloomFilter(params)
            chunked.add_tokens(tokens)
            assert np.array_equal(chunked.bits, whole.bits)
            for path in ("scatter", "at"):
                assert np.array_equal(query(whole, probes, path), expected_hits)


@PROPERTY
@given(
    items=st.sets(st.text(max_size=24), max_size=150),
    capacity=st.integers(1, 400),
    fpr=st.sampled_from([0.3, 0.01, 0.001]),
    split=st.integers(0, 150),
)
def test_no_false_negatives(items: set[str], capacity: int, fpr: float, split: int) -> None:
    params = params_for(capacity, fpr)  # may be over-filled on purpose: still no false negative
    ordered = sorted(items)
    tokens = KeyedPRF(KEY).tokens(ordered)
    batches = [tokens[:split], tokens[split:]]
    for add_path in ("scatter", "at"):
        bloom = build(params, batches, add_path)
        assert bloom.count == len(items)
        for query_path in ("scatter", "at"):
            assert query(bloom, tokens, query_path).all()


def test_keyed_filter_add_and_contains() -> None:
    params = params_for(1_000, 0.01)
    prf = KeyedPRF(KEY)
    bloom = KeyedBloomFilter(params, prf)
    members = values("m", 800)
    returned = bloom.add(members)
    assert np.array_equal(returned, prf.tokens(members))
    assert bloom.count == 800
    assert bloom.contains(members).all()
    assert bloom.contains(iter(members)).all()
    plain = BloomFilter(params)
    plain.add_tokens(prf.tokens(members))
    assert np.array_equal(plain.bits, bloom.bits)
    assert "bits" not in repr(bloom)
    assert repr(bloom) == "BloomFilter(kind='email', key_id='forum-1', m=9600, k=7, count=800)"


def test_empty_filter_contains_nothing() -> None:
    bloom = BloomFilter(params_for(100, 0.01))
    probes = random_tokens(6, 50)
    for path in ("scatter", "at"):
        assert not query(bloom, probes, path).any()
    assert bloom.contains_tokens(random_tokens(6, 0)).shape == (0,)
    assert bloom.set_bits() == 0
    assert bloom.fill() == 0.0


@pytest.mark.parametrize(
    ("bits", "count", "message"),
    [
        (np.zeros(79, dtype=np.uint8), 0, "bit array"),
        (np.zeros(81, dtype=np.uint8), 0, "bit array"),
        (np.zeros(80, dtype=np.uint16), 0, "bit array"),
        (np.zeros((8, 10), dtype=np.uint8), 0, "bit array"),
        (np.zeros(80, dtype=np.bool_), 0, "bit array"),
        (None, -1, "negative"),
    ],
)
def test_filter_constructor_validation(
    bits: npt.NDArray[np.generic] | None, count: int, message: str
) -> None:
    with pytest.raises(ParameterError, match=message):
        BloomFilter(params_for(64, 0.01), bits, count)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- false positives


@pytest.mark.parametrize("fpr", [0.01, 0.001])
def test_measured_fpr_and_fill_match_theory(fpr: float) -> None:
    n, queries = 20_000, 200_000
    params = params_for(n, fpr)
    bloom = KeyedBloomFilter(params, KeyedPRF(KEY))
    bloom.add(values("member", n))
    fill = bloom.fill()
    # Fill: the set-bit count after n items has sd fill_stddev(n)·m (occupancy variance); 6σ.
    assert abs(fill - params.expected_fill(n)) <= 6 * params.fill_stddev(n)
    hits = bloom.contains(values("stranger", queries))
    false_positives = int(hits.sum())
    # Given the observed fill, each non-member is a false positive with p = fill^k (k positions
    # landing on set bits), independently across non-members: FP ~ Binomial(Q, p); 4σ band.
    p = params.fpr_at_fill(fill)
    assert abs(false_positives - queries * p) <= 4 * math.sqrt(queries * p * (1 - p))
    assert false_positives / queries <= 1.2 * fpr


# ----------------------------------------------------------------------------- union, popcounts


def test_union_is_bitwise_or_and_equals_filter_of_the_union() -> None:
    params = params_for(5_000, 0.01)
    prf = KeyedPRF(KEY)
    left_items, right_items = values("x", 3_000), values("x", 4_500)[1_500:] + values("y", 500)
    left, right = KeyedBloomFilter(params, prf), KeyedBloomFilter(params, prf)
    left.add(left_items)
    right.add(right_items)
    left_bits, right_bits = left.bits.copy(), right.bits.copy()
    union = left.union(right)
    assert np.array_equal(union.bits, np.bitwise_or(left_bits, right_bits))
    assert union.count == left.count + right.count  # an upper bound: overlap counted twice
    together = KeyedBloomFilter(params, prf)
    together.add(sorted(set(left_items) | set(right_items)))
    assert np.array_equal(union.bits, together.bits)
    assert together.count < union.count
    # Operands untouched; the union is a new array.
    assert np.array_equal(left.bits, left_bits)
    assert np.array_equal(right.bits, right_bits)
    assert union.bits is not left.bits
    assert union.params == params


@pytest.mark.parametrize(
    "change", [{"kind": "phone"}, {"key_id": "forum-2"}, {"k": 6}, {"capacity": 4_999}]
)
def test_incompatible_filters_refused(change: dict[str, object]) -> None:
    params = params_for(5_000, 0.01)
    other = BloomParams(**{**_as_dict(params), **change})
    a, b = BloomFilter(params), BloomFilter(other)
    with pytest.raises(ParameterError, match="different parameters"):
        a.union(b)


def test_filters_of_different_size_refused() -> None:
    a = BloomFilter(params_for(5_000, 0.01))
    b = BloomFilter(params_for(6_000, 0.01))
    with pytest.raises(ParameterError):
        a.union(b)
    with pytest.raises(ParameterError, match="differ in size"):
        and_popcount(a.bits, b.bits)


CHUNK_BYTES = 8 * (1 << 15)  # and_popcount works in chunks of 2^15 uint64 words


@pytest.mark.parametrize(
    "size",
    [0, 1, 7, 8, 9, 80, 1000, CHUNK_BYTES - 8, CHUNK_BYTES, CHUNK_BYTES + 8, 3 * CHUNK_BYTES - 24,
     2 * CHUNK_BYTES + 5],
)  # fmt: skip
def test_popcount_and_and_popcount_match_numpy(size: int) -> None:
    rng = np.random.default_rng(size)
    a = rng.integers(0, 256, size=size, dtype=np.uint8)
    b = rng.integers(0, 256, size=size, dtype=np.uint8)
    assert popcount(a) == set_bits_reference(a)
    assert and_popcount(a, b) == set_bits_reference(np.bitwise_and(a, b))
    assert and_popcount(a, a) == popcount(a)
    full = np.full(size, 0xFF, dtype=np.uint8)
    assert and_popcount(full, full) == 8 * size == popcount(full)


# ----------------------------------------------------------------------------- forum FPR


def test_filter_at_capacity_meets_the_for_forum_rate() -> None:
    # 20_000 items at forum FPR 0.01 over 5 members: per-filter target 0.0025, m = 249_472,
    # k = 9. Fill the filter to capacity with random tokens, query Q fresh ones (fixed seeds).
    params = BloomParams.for_forum("email", "forum-1", 20_000, 0.01, 5)
    target, m, k, n = params.target_fpr, params.m, params.k, params.capacity
    bloom = BloomFilter(params)
    bloom.add_tokens(random_tokens(31, n))
    queries = 1_000_000
    false_positives = int(bloom.contains_tokens(random_tokens(32, queries)).sum())
    # Where the rate can sit, given the parameters alone:
    # 1. The fill after n items is within 6σ of its mean (fill_stddev, exact occupancy).
    # 2. Given the fill, each query is a false positive with p = fpr_at_fill(fill),
    #    independently (its k positions are independent of the filter's bits).
    # 3. At the mean fill, p is within the rounding of m and k of the target:
    #    target·exp(−64·ln²2/n) (m rounded up by < 64 bits) ≤ p ≤ target·exp(0.054/(k − ½) +
    #    k²/m) (k rounded, see test_for_capacity_meets_its_target).
    spread = 6 * params.fill_stddev(n)
    mean_fill = params.expected_fill(n)
    low = params.fpr_at_fill(mean_fill - spread)
    high = params.fpr_at_fill(mean_fill + spread)
    centre = params.fpr_at_fill(mean_fill)
    assert target * math.exp(-64 * LN2**2 / n) <= centre
    assert centre <= target * math.exp(0.054 / (k - 0.5) + k**2 / m)
    assert abs(bloom.fill() - mean_fill) <= spread
    # FP ~ Binomial(Q, p) with p in [low, high]: 6σ of the binomial beyond that range.
    lower = queries * low - 6 * math.sqrt(queries * low)
    upper = queries * high + 6 * math.sqrt(queries * high)
    assert lower <= false_positives <= upper
    # In figures: target 0.0025 → 2_500 expected; the band is ≈ 2_070 … 2_970.
    assert 0.8 * target <= false_positives / queries <= 1.25 * target


# ----------------------------------------------------------------------------- membership

MEMBERS = 4


def holder_sets(seed: int, universe: int) -> list[frozenset[int]]:
    """A random non-empty set of holders among the four members for every item."""
    rng = np.random.default_rng(seed)
    subsets = [
        frozenset(s)
        for size in range(1, MEMBERS + 1)
        for s in itertools.combinations(range(MEMBERS), size)
    ]
    return [subsets[i] for i in rng.integers(0, len(subsets), size=universe)]


@pytest.mark.parametrize("universe", [3_000, 9_000])  # fill ≈ 0.2 per member, and ≈ 0.5
def test_each_member_filter_against_its_exact_holder_set(universe: int) -> None:
    params = params_for(5_000, 0.001)  # m = 71_936, k = 10
    holders = holder_sets(21, universe)  # each member holds ≈ 8/15 of the items
    tokens = KeyedPRF(KEY).tokens(values("r", universe))
    for member in range(MEMBERS):
        held = np.array([member in h for h in holders])
        bloom = BloomFilter(params)
        bloom.add_tokens(tokens[held])
        hits = bloom.contains_tokens(tokens)
        # No false negatives: every holder's filter answers yes for each of its items.
        assert hits[held].all()
        # The others are false positives, each with p = fpr_at_fill(fill) given the filter
        # (an item's positions are independent of the bits of items it is not among):
        # Binomial(non-held, p); 6σ band plus one for the tiny mean of the sparse forum.
        others = int((~held).sum())
        p = params.fpr_at_fill(bloom.fill())
        false_positives = int(hits[~held].sum())
        assert abs(false_positives - others * p) <= 6 * math.sqrt(others * p) + 1
