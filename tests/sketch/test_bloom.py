"""Bloom filters: parameters, bit positions, both insert/query paths, FPR, union and resolution."""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Iterator
from contextlib import contextmanager
from unittest import mock

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sigshare.sketch.bloom as bloom_module
from sigshare.sketch.bloom import (
    MAX_BITS,
    MAX_HASHES,
    BloomFilter,
    BloomParams,
    KeyedBloomFilter,
    and_popcount,
    bit_positions,
    count_vector,
    popcount,
    resolution_vector,
    resolve_tokens,
)
from sigshare.sketch.errors import ParameterError
from sigshare.sketch.prf import KeyedPRF, TokenArray, tokens_from_bytes

KEY = bytes(range(32))
LN2 = math.log(2.0)
PROPERTY = settings(derandomize=True, deadline=None, max_examples=100)


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
    # The FPR at capacity, (1 − e^(−k·n/m))^k, is flat around the optimum k* = m/n·ln 2:
    # d²/dk² [k·ln(1 − e^(−c·k))] = c·0.614 at the optimum (c = n/m = ln 2 / k*), so rounding k
    # by ≤ ½ costs at most ln-ratio ½·(ln 2/k*)·0.614·¼ = 0.053/k*, and k* ≥ k − ½. Rounding m
    # up only helps. Hence FPR(capacity) ≤ target·exp(0.054/(k − ½)).
    achieved = params.fpr_at_fill(params.expected_fill(capacity))
    assert achieved <= fpr * math.exp(0.054 / (params.k - 0.5))


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


@pytest.mark.parametrize("count", [0, 1, 100, 20_000, 50_000])
def test_expected_fill_and_stddev_formulas(count: int) -> None:
    params = params_for(20_000, 0.01)
    m, k = params.m, params.k
    # The naive power loses ≈ k·count·2⁻⁵³ relative precision (1e-11 here); the module uses
    # expm1/log1p, so compare at 1e-9.
    naive = 1 - (1 - 1 / m) ** (k * count)
    assert params.expected_fill(count) == pytest.approx(naive, rel=1e-9)
    lam = k * count / m
    variance = m * math.exp(-lam) * (1 - (1 + lam) * math.exp(-lam))
    assert params.fill_stddev(count) == pytest.approx(math.sqrt(variance) / m, rel=1e-12)
    assert params.fpr_at_fill(0.5) == pytest.approx(0.5**k, rel=1e-15)


def test_expected_fill_edges() -> None:
    params = params_for(100, 0.01)
    assert params.expected_fill(0) == 0.0
    assert params.fill_stddev(0) == 0.0
    assert params.fpr_at_fill(0.0) == 0.0
    assert params.fpr_at_fill(1.0) == 1.0
    assert params.expected_fill(10**9) == pytest.approx(1.0)


def test_digest_is_sha256_of_canonical_json() -> None:
    params = BloomParams(
        kind="email", key_id="forum-1", m=191_744, k=7, capacity=20_000, target_fpr=0.01
    )
    canonical = (
        b'{"capacity":20000,"format":"sigshare/bloom-params/v1","k":7,'
        b'"key_id":"forum-1","kind":"email","m":191744}'
    )
    assert params.digest() == hashlib.sha256(canonical).digest()


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


def positions_reference(token: bytes, m: int, k: int) -> list[int]:
    """The module docstring's formula, in Python integers."""
    h1 = int.from_bytes(token[0:4], "little")
    h2 = int.from_bytes(token[4:8], "little") | 1
    return [(((h1 + i * h2) % 2**32) * m) >> 32 for i in range(k)]


@PROPERTY
@given(
    tokens=st.lists(st.binary(min_size=16, max_size=16), min_size=1, max_size=20),
    words=st.one_of(st.integers(1, 4096), st.sampled_from([2**26 - 1, 2**26])),
    k=st.integers(1, MAX_HASHES),
)
def test_bit_positions_match_documented_formula(tokens: list[bytes], words: int, k: int) -> None:
    m = 64 * words  # up to 2^32 (words = 2^26)
    out = bit_positions(tokens_from_bytes(tokens), m, k)
    assert out.shape == (k, len(tokens))
    assert out.dtype == np.int64
    assert ((out >= 0) & (out < m)).all()
    for column, token in enumerate(tokens):
        assert out[:, column].tolist() == positions_reference(token, m, k)


def test_bit_positions_extreme_tokens() -> None:
    tokens = [bytes(16), b"\xff" * 16, b"\xff" * 4 + bytes(12), bytes(4) + b"\xff" * 12]
    for m in (64, MAX_BITS):
        out = bit_positions(tokens_from_bytes(tokens), m, MAX_HASHES)
        for column, token in enumerate(tokens):
            assert out[:, column].tolist() == positions_reference(token, m, MAX_HASHES)
        assert int(out.max()) < m


def test_bit_positions_are_near_uniform() -> None:
    # 20_000 tokens × 7 positions into 64 cells of m/64 bits: each cell count ~ Binomial(N, 1/64).
    # Chi-square with 63 dof: mean 63, sd sqrt(126) ≈ 11.2; 6σ cut-off ≈ 130.
    m, k, n = 64 * 1000, 7, 20_000
    positions = bit_positions(random_tokens(11, n), m, k).ravel()
    counts = np.bincount(positions * 64 // m, minlength=64)
    expected = n * k / 64
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 <= 63 + 6 * math.sqrt(2 * 63)


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
    probes = random_tokens(5, 3_000)
    whole = BloomFilter(params)
    whole.add_tokens(tokens)
    expected_hits = whole.contains_tokens(probes)
    resolution = np.arange(params.m, dtype=np.uint16) % 5
    expected_resolved = resolve_tokens(resolution, params, probes)
    with mock.patch.object(bloom_module, "_POSITION_CHUNK", 7):
        chunked = BloomFilter(params)
        chunked.add_tokens(tokens)
        assert np.array_equal(chunked.bits, whole.bits)
        for path in ("scatter", "at"):
            assert np.array_equal(query(whole, probes, path), expected_hits)
        assert np.array_equal(resolve_tokens(resolution, params, probes), expected_resolved)


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
    with pytest.raises(ParameterError, match="different parameters"):
        count_vector([a, b])


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


# ----------------------------------------------------------------------------- resolution

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


def bit_matrix(filters: list[BloomFilter]) -> npt.NDArray[np.int64]:
    """(members, m) 0/1 matrix read bit by bit as the module docstring defines it."""
    p = np.arange(filters[0].params.m)
    return np.stack([((f.bits[p >> 3] >> (p & 7)) & 1).astype(np.int64) for f in filters])


Forum = tuple[BloomParams, list[BloomFilter], list[frozenset[int]], TokenArray]


def make_forum(universe: int) -> Forum:
    params = params_for(5_000, 0.001)  # m = 71_936, k = 10
    holders = holder_sets(21, universe)  # each member holds ≈ 8/15 of the items
    tokens = KeyedPRF(KEY).tokens(values("r", len(holders)))
    filters = []
    for member in range(MEMBERS):
        mine = [i for i, h in enumerate(holders) if member in h]
        bloom = BloomFilter(params)
        bloom.add_tokens(tokens[mine])
        filters.append(bloom)
    return params, filters, holders, tokens


@pytest.fixture(scope="module")
def forum() -> Forum:
    return make_forum(3_000)  # ≈ 1_600 items per member: fill ≈ 0.2, resolution almost exact


@pytest.fixture(scope="module")
def dense_forum() -> Forum:
    return make_forum(9_000)  # ≈ 4_800 items per member: fill ≈ 0.49, many false positives


def test_count_vector_counts_filters_per_bit(forum: Forum) -> None:
    params, filters, _, _ = forum
    counts = count_vector(filters)
    assert counts.dtype == np.uint8  # one byte per bit: at most 255 members
    assert counts.shape == (params.m,)
    assert np.array_equal(counts, bit_matrix(filters).sum(axis=0))
    assert np.array_equal(count_vector(iter(filters[:1])), bit_matrix(filters[:1])[0])


@pytest.mark.parametrize("density", ["forum", "dense_forum"])
@pytest.mark.parametrize("quorum", [2, 3])
@pytest.mark.parametrize("requester", range(MEMBERS))
def test_resolution_against_exact_oracle(
    request: pytest.FixtureRequest, density: str, quorum: int, requester: int
) -> None:
    forum: Forum = request.getfixturevalue(density)
    params, filters, holders, tokens = forum
    k = params.k
    matrix = bit_matrix(filters)
    counts = count_vector(filters)
    resolution = resolution_vector(counts, filters[requester], quorum)
    mine = np.array([i for i, h in enumerate(holders) if requester in h])
    resolved = resolve_tokens(resolution, params, tokens[mine]).astype(np.int64)

    # 1. Bit-exact reference: R_p = Σ_{i≠requester} B_i[p], zeroed below quorum − 1, min over
    #    the item's k positions (computed from the per-member bits, not from count_vector).
    others = np.delete(matrix, requester, axis=0).sum(axis=0)
    others[others < quorum - 1] = 0
    positions = bit_positions(tokens[mine], params.m, k)
    assert np.array_equal(resolved, others[positions].min(axis=0))

    # 2. Set-level oracle. For item x, j = number of *other* members holding it. The bits of x
    #    are set in every holder, so R ≥ j at all of x's positions: when j ≥ quorum − 1 the
    #    result is never below j. It exceeds j only if each of x's k positions is also set by
    #    some non-holder (or, below quorum, reaches quorum − 1 from non-holders): probability
    #    q_T^k, with q_T the fraction of positions where the non-holders T reach the needed
    #    count (x's positions are independent of T's filters: x is not in them).
    exact = np.array([len(holders[i]) - 1 for i in mine])
    expected_exceptions = 0.0
    exceptions = 0
    q_cache: dict[tuple[frozenset[int], int], float] = {}
    for index, item in enumerate(mine):
        j = int(exact[index])
        if j >= quorum - 1:
            assert resolved[index] >= j
            need = 1
            exceptions += int(resolved[index] != j)
        else:
            need = quorum - 1 - j
            exceptions += int(resolved[index] != 0)
            assert resolved[index] == 0 or resolved[index] >= quorum - 1
        key = (holders[item], need)
        if key not in q_cache:
            non_holders = [i for i in range(MEMBERS) if i not in holders[item]]
            column = matrix[non_holders].sum(axis=0)  # all zeros when everyone holds it
            q_cache[key] = float(np.mean(column >= need))
        expected_exceptions += q_cache[key] ** k
    # Given the filters, exceptions are independent rare events (each item's positions are
    # independent of the non-holders' bits): a Poisson-binomial count, sd ≤ sqrt(mean); band
    # 6·sqrt(mean) + 1 on both sides (the dense forum has ≈ 20–35, the sparse one ≈ 0).
    tolerance = 6 * math.sqrt(expected_exceptions) + 1
    assert abs(exceptions - expected_exceptions) <= tolerance
    # Held by everyone: no non-holder, so the count is exact.
    everyone = exact == MEMBERS - 1
    assert everyone.sum() > 100
    assert (resolved[everyone] == MEMBERS - 1).all()


@pytest.mark.parametrize("quorum", [2, 3, 4])
def test_resolution_hides_items_below_quorum(forum: Forum, quorum: int) -> None:
    params, filters, holders, tokens = forum
    counts = count_vector(filters)
    revealed = below = 0
    for requester in range(MEMBERS):
        resolution = resolution_vector(counts, filters[requester], quorum)
        mine = [i for i, h in enumerate(holders) if requester in h and len(h) < quorum]
        resolved = resolve_tokens(resolution, params, tokens[mine])
        revealed += int((resolved != 0).sum())
        below += len(mine)
        # Without the zeroing, items held by the requester and one other would all show up:
        raw = counts - np.unpackbits(filters[requester].bits, bitorder="little")
        shared = [i for i in mine if len(holders[i]) >= 2]
        assert (resolve_tokens(raw.astype(np.uint16), params, tokens[shared]) >= 1).all()
    assert below >= 700  # quorum 2: the ≈ 4/15 of items held by one member only
    # Fills ≈ 0.2 per member: a below-quorum item leaks only if all k = 10 of its positions
    # reach quorum − 1 through non-holders, at most ≈ (1 − 0.8³)^10 ≈ 7e-4 per item; allow 1%.
    assert revealed <= 0.01 * below


def test_resolution_parameter_errors(forum: Forum) -> None:
    _, filters, _, _ = forum
    counts = count_vector(filters)
    with pytest.raises(ParameterError, match="quorum"):
        resolution_vector(counts, filters[0], 1)
    with pytest.raises(ParameterError, match="differ in size"):
        resolution_vector(counts[:-8], filters[0], 2)
    with pytest.raises(ParameterError, match="at least one filter"):
        count_vector([])
