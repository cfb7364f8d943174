"""LSH banding, band keys, candidate pairs and components against brute-force and datasketch."""

from __future__ import annotations

import itertools
import math
from collections import defaultdict, deque

import numpy as np
import numpy.typing as npt
import pytest
from datasketch import MinHash, MinHashLSH
from datasketch.lsh import _false_negative_probability, _false_positive_probability
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from sigshare.sketch.errors import ParameterError
from sigshare.sketch.lsh import (
    Banding,
    band_keys,
    bucket_edges,
    candidate_pairs,
    connected_components,
    optimal_banding,
    pair_similarity,
)
from sigshare.sketch.minhash import MinHashParams, SaltedMinHasher

KEY = bytes(range(32))
Pairs = npt.NDArray[np.int64]


# -- banding ------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_perm", [64, 128, 256])
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7, 0.8, 0.9])
def test_optimal_banding_matches_datasketch(threshold: float, num_perm: int) -> None:
    ours = optimal_banding(threshold, num_perm)
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    theirs = (lsh.b, lsh.r)
    if (ours.bands, ours.rows) != theirs:  # report both objectives (quad-integrated) on failure

        def objective(b: int, r: int) -> float:
            fp = _false_positive_probability(threshold, b, r)
            fn = _false_negative_probability(threshold, b, r)
            return 0.5 * fp + 0.5 * fn

        pytest.fail(
            f"ours {ours} objective {objective(ours.bands, ours.rows):.12g}, "
            f"datasketch {theirs} objective {objective(*theirs):.12g}"
        )
    assert ours.bands * ours.rows <= num_perm


def test_optimal_banding_weights_shift_the_choice() -> None:
    balanced = optimal_banding(0.5, 128)
    recall_first = optimal_banding(0.5, 128, false_positive_weight=0.1, false_negative_weight=0.9)
    # Penalising misses more must not lower the collision probability at the threshold.
    assert recall_first.collision_probability(0.5) >= balanced.collision_probability(0.5)
    assert recall_first != balanced


@pytest.mark.parametrize(
    ("threshold", "weights"),
    [(0.0, (0.5, 0.5)), (1.0, (0.5, 0.5)), (-0.1, (0.5, 0.5)), (0.5, (0.5, 0.6))],
)
def test_optimal_banding_validation(threshold: float, weights: tuple[float, float]) -> None:
    with pytest.raises(ParameterError):
        optimal_banding(threshold, 64, *weights)


def test_collision_probability() -> None:
    banding = Banding(25, 5)
    assert banding.collision_probability(0.0) == 0.0
    assert banding.collision_probability(1.0) == 1.0
    assert banding.collision_probability(0.5) == pytest.approx(1 - (1 - 0.5**5) ** 25)
    values = [banding.collision_probability(s / 20) for s in range(21)]
    assert values == sorted(values)


# -- band keys ----------------------------------------------------------------------------------


def test_band_keys_pack_one_and_two_rows_exactly() -> None:
    rng = np.random.default_rng(1)
    signatures = rng.integers(0, 2**32, size=(50, 12), dtype=np.uint64).astype(np.uint32)
    keys = band_keys(signatures, Banding(12, 1))
    assert keys.shape == (12, 50)
    assert keys.dtype == np.uint64
    np.testing.assert_array_equal(keys, signatures.T.astype(np.uint64))
    keys = band_keys(signatures, Banding(5, 2))  # uses the first 10 of 12 values
    assert keys.shape == (5, 50)
    expected = signatures[:, 0:10:2].astype(np.uint64) | (
        signatures[:, 1:10:2].astype(np.uint64) << np.uint64(32)
    )
    np.testing.assert_array_equal(keys, expected.T)


@pytest.mark.parametrize("rows", [3, 4, 7])
def test_band_keys_equal_bands_give_equal_keys(rows: int) -> None:
    rng = np.random.default_rng(rows)
    bands = 4
    base = rng.integers(0, 2**32, size=(200, bands * rows + 3), dtype=np.uint64).astype(np.uint32)
    copy = rng.integers(0, 2**32, size=base.shape, dtype=np.uint64).astype(np.uint32)
    shared = rng.integers(0, 2, size=(200, bands)).astype(bool)
    for band in range(bands):
        rows_slice = slice(band * rows, (band + 1) * rows)
        copy[shared[:, band], rows_slice] = base[shared[:, band], rows_slice]
    first, second = band_keys(base, Banding(bands, rows)), band_keys(copy, Banding(bands, rows))
    np.testing.assert_array_equal(first == second, shared.T)


def test_band_keys_distinguish_unequal_bands() -> None:
    rng = np.random.default_rng(42)
    count = 100_000
    for rows in (3, 5):
        signatures = rng.integers(0, 2**32, size=(count, rows), dtype=np.uint64).astype(np.uint32)
        # Hard cases too: one bit flipped in one row, rows swapped, small values, zeros.
        flipped = signatures.copy()
        flipped[np.arange(count), rng.integers(0, rows, count)] ^= np.uint32(1) << rng.integers(
            0, 32, count
        ).astype(np.uint32)
        swapped = signatures[:, ::-1].copy()
        small = rng.integers(0, 4, size=(count, rows)).astype(np.uint32)
        every = np.concatenate(
            [signatures, flipped, swapped, small, np.zeros((1, rows), np.uint32)]
        )
        keys = band_keys(every, Banding(1, rows))[0]
        distinct_rows = len(np.unique(every, axis=0))
        # Keys of distinct bands collide with odds ~2⁻⁶⁴ per pair: for 3·10⁵ bands, about
        # 3·10⁻⁹ expected collisions in all — any collision is a defect.
        assert len(np.unique(keys)) == distinct_rows


def test_band_keys_reject_too_short_signatures() -> None:
    with pytest.raises(ParameterError):
        band_keys(np.zeros((3, 10), dtype=np.uint32), Banding(4, 3))


# -- candidate pairs ----------------------------------------------------------------------------


def oracle_pairs(
    signatures: npt.NDArray[np.uint32], banding: Banding, groups: npt.NDArray | None = None
) -> set[tuple[int, int]]:
    """Every pair sharing at least one identical band, with Python dictionaries."""
    out: set[tuple[int, int]] = set()
    for band in range(banding.bands):
        buckets: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for index, row in enumerate(signatures.tolist()):
            buckets[tuple(row[band * banding.rows : (band + 1) * banding.rows])].append(index)
        for members in buckets.values():
            for i, j in itertools.combinations(members, 2):
                if groups is None or groups[i] != groups[j]:
                    out.add((i, j))
    return out


def assert_pairs_format(pairs: Pairs) -> None:
    assert pairs.dtype == np.int64
    assert pairs.ndim == 2
    assert pairs.shape[1] == 2
    if len(pairs):
        assert np.all(pairs[:, 0] < pairs[:, 1])
        order = np.lexsort((pairs[:, 1], pairs[:, 0]))
        np.testing.assert_array_equal(order, np.arange(len(pairs)))  # sorted
        assert len({tuple(p) for p in pairs.tolist()}) == len(pairs)  # no repeats


def as_set(pairs: Pairs) -> set[tuple[int, int]]:
    return {(int(i), int(j)) for i, j in pairs}


@st.composite
def signature_sets(draw: st.DrawFn) -> tuple[npt.NDArray[np.uint32], Banding, npt.NDArray]:
    bands = draw(st.integers(1, 6))
    rows = draw(st.integers(1, 5))
    perms = bands * rows + draw(st.integers(0, 2))
    count = draw(st.integers(0, 40))
    alphabet = draw(st.integers(1, 4))  # tiny alphabets: many shared bands and big buckets
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    signatures = rng.integers(0, alphabet, size=(count, perms)).astype(np.uint32)
    if count:
        # Planted exact duplicates and high-valued entries (bit 31 set, EMPTY).
        duplicates = rng.integers(0, count, size=count // 3)
        signatures[rng.integers(0, count, size=count // 3)] = signatures[duplicates]
        signatures[rng.random(signatures.shape) < 0.05] = 0xFFFFFFFF
    groups = rng.integers(0, draw(st.integers(1, 3)), size=count)
    return signatures, Banding(bands, rows), groups


@settings(max_examples=250, deadline=None)
@given(signature_sets())
def test_candidate_pairs_equal_brute_force(
    case: tuple[npt.NDArray[np.uint32], Banding, npt.NDArray],
) -> None:
    signatures, banding, groups = case
    pairs = candidate_pairs(signatures, banding)
    assert_pairs_format(pairs)
    assert as_set(pairs) == oracle_pairs(signatures, banding)
    cross = candidate_pairs(signatures, banding, groups=groups)
    assert_pairs_format(cross)
    assert as_set(cross) == oracle_pairs(signatures, banding, groups)


def larger_case(seed: int = 7) -> tuple[npt.NDArray[np.uint32], npt.NDArray]:
    """3,000 signatures of 32 values: a campaign bucket of 300 copies, near-duplicate families
    (a few values changed) and random noise from a small alphabet."""
    rng = np.random.default_rng(seed)
    count, perms = 3000, 32
    signatures = rng.integers(0, 2**32, size=(count, perms), dtype=np.uint64).astype(np.uint32)
    signatures[:300] = signatures[0]  # one huge bucket
    for _ in range(40):
        members = rng.choice(np.arange(300, count), size=12, replace=False)
        base = rng.integers(0, 2**32, size=perms, dtype=np.uint64).astype(np.uint32)
        for member in members:
            row = base.copy()
            changed = rng.random(perms) < 0.3
            row[changed] = rng.integers(0, 2**32, size=changed.sum(), dtype=np.uint64)
            signatures[member] = row
    noise = rng.random((count, perms)) < 0.02
    signatures[noise] = rng.integers(0, 3, size=noise.sum())
    groups = rng.integers(0, 5, size=count)
    return signatures, groups


def test_candidate_pairs_equal_brute_force_large() -> None:
    signatures, groups = larger_case()
    banding = Banding(8, 4)
    expected = oracle_pairs(signatures, banding)
    assert len(expected) > 300 * 299 // 2  # the campaign bucket alone has 44,850 pairs
    pairs = candidate_pairs(signatures, banding)
    assert_pairs_format(pairs)
    assert as_set(pairs) == expected
    assert as_set(candidate_pairs(signatures, banding, groups)) == oracle_pairs(
        signatures, banding, groups
    )


@pytest.mark.parametrize(("bands", "rows"), [(16, 4), (32, 2), (8, 8), (21, 3)])
def test_candidate_pairs_equal_datasketch_lsh(bands: int, rows: int) -> None:
    signatures, groups = larger_case(seed=bands)
    signatures = signatures[:600, :]
    perms = 64
    rng = np.random.default_rng(bands * rows)
    signatures = np.concatenate(
        [signatures, rng.integers(0, 2**32, size=(600, perms - 32), dtype=np.uint64)], axis=1
    ).astype(np.uint32)
    # The planted buckets and families live in the first 32 values; the rest are random.
    lsh = MinHashLSH(threshold=0.5, num_perm=perms, params=(bands, rows))
    sketches = [MinHash(num_perm=perms, hashvalues=row, scheme="affine32") for row in signatures]
    for index, sketch in enumerate(sketches):
        lsh.insert(index, sketch)
    theirs = {
        (min(i, j), max(i, j))
        for i, sketch in enumerate(sketches)
        for j in lsh.query(sketch)
        if i != j
    }
    banding = Banding(bands, rows)
    assert as_set(candidate_pairs(signatures, banding)) == theirs
    theirs_cross = {(i, j) for i, j in theirs if groups[i] != groups[j]}
    assert as_set(candidate_pairs(signatures, banding, groups[:600])) == theirs_cross
    assert len(theirs) > 1000


def planted_signature_pairs(
    hasher: SaltedMinHasher, similarity: float, count: int, seed: int
) -> npt.NDArray[np.uint32]:
    """Signatures of ``count`` independent pairs of random sets with exact Jaccard ``similarity``
    (rows 2k and 2k + 1)."""
    rng = np.random.default_rng(seed)
    union = 200
    shared = round(similarity * union)
    assert shared / union == pytest.approx(similarity)
    sets = []
    for _ in range(count):
        values = rng.choice(2**32, size=union, replace=False).astype(np.uint32)
        split = shared + (union - shared) // 2
        sets += [values[:split], np.concatenate([values[:shared], values[split:]])]
    offsets = np.zeros(len(sets) + 1, dtype=np.int64)
    np.cumsum([len(s) for s in sets], out=offsets[1:])
    return hasher.signatures_from_shingles(np.concatenate(sets), offsets)


@pytest.mark.parametrize("threshold", [0.5, 0.8])
def test_lsh_recall_and_false_positives_follow_the_s_curve(threshold: float) -> None:
    hasher = SaltedMinHasher(MinHashParams("test-1"), KEY)
    banding = optimal_banding(threshold, 128)
    count = 400
    for offset in (-0.2, 0.0, 0.1, 0.2):
        similarity = round(threshold + offset, 2)  # 0.8 + 0.2 = 1: identical sets, p = 1
        signatures = planted_signature_pairs(hasher, similarity, count, seed=int(similarity * 100))
        pairs = as_set(candidate_pairs(signatures, banding))
        found = sum((2 * k, 2 * k + 1) in pairs for k in range(count)) / count
        p = banding.collision_probability(similarity)
        if offset >= 0:
            # Recall at and above θ: each planted pair is a candidate with probability p
            # (independent permutations), so the found fraction has sd √(p(1−p)/n); 4 sd below
            # p is a ~3·10⁻⁵ tail (p ≥ 0.4 here, so the normal approximation is adequate).
            assert found >= p - 4 * math.sqrt(p * (1 - p) / count), (similarity, found, p)
        else:
            # False positives below θ (p ≈ 0.06 at 0.3): the count is Binomial(n, p), strongly
            # skewed, so use its exact upper 3·10⁻⁵ quantile rather than p + 4σ (whose true tail
            # is ~10⁻⁴ here).
            limit = stats.binom.isf(3e-5, count, p)
            assert found * count <= limit, (similarity, found, p, limit)


# -- bucket edges, similarity and components ---------------------------------------------------


def oracle_components(count: int, edges: list[tuple[int, int]]) -> list[int]:
    """Label of each node: the smallest node of its component (breadth-first search)."""
    adjacency: dict[int, list[int]] = defaultdict(list)
    for i, j in edges:
        adjacency[i].append(j)
        adjacency[j].append(i)
    labels = [-1] * count
    for start in range(count):
        if labels[start] >= 0:
            continue
        labels[start] = start  # nodes are visited in increasing order: start is the smallest
        queue = deque([start])
        while queue:
            node = queue.popleft()
            for neighbour in adjacency[node]:
                if labels[neighbour] < 0:
                    labels[neighbour] = start
                    queue.append(neighbour)
    return labels


@settings(max_examples=150, deadline=None)
@given(signature_sets())
def test_bucket_edges_connect_the_same_components(
    case: tuple[npt.NDArray[np.uint32], Banding, npt.NDArray],
) -> None:
    signatures, banding, _ = case
    count = len(signatures)
    edges = bucket_edges(signatures, banding)
    pairs = candidate_pairs(signatures, banding)
    assert_pairs_format(edges)
    assert as_set(edges) <= as_set(pairs)  # every edge joins two members of one bucket
    assert len(edges) <= 2 * count * banding.bands  # linear size
    np.testing.assert_array_equal(
        connected_components(count, edges), connected_components(count, pairs)
    )
    assert connected_components(count, edges).tolist() == oracle_components(
        count, list(as_set(pairs))
    )


def union_find_bucket_components(signatures: npt.NDArray[np.uint32], banding: Banding) -> list[int]:
    """Components of "shares a band", by union-find over Python dictionaries of buckets."""
    parent = list(range(len(signatures)))

    def find(node: int) -> int:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for band in range(banding.bands):
        first_in_bucket: dict[tuple[int, ...], int] = {}
        for index, row in enumerate(signatures.tolist()):
            bucket = tuple(row[band * banding.rows : (band + 1) * banding.rows])
            root, other = find(index), find(first_in_bucket.setdefault(bucket, index))
            parent[max(root, other)] = min(root, other)
    return [find(node) for node in range(len(signatures))]


def test_bucket_edges_stay_linear_on_a_campaign() -> None:
    signatures, _ = larger_case()
    signatures[:2000] = signatures[0]  # a campaign of 2,000 copies: ~2·10⁶ pairs per band
    banding = Banding(8, 4)
    edges = bucket_edges(signatures, banding)
    assert_pairs_format(edges)
    assert len(edges) <= 2 * len(signatures) * banding.bands
    labels = connected_components(len(signatures), edges)
    assert labels.tolist() == union_find_bucket_components(signatures, banding)
    assert np.all(labels[:2000] == 0)


@st.composite
def graphs(draw: st.DrawFn) -> tuple[int, list[tuple[int, int]]]:
    count = draw(st.integers(0, 60))
    if count == 0:
        return 0, []
    node = st.integers(0, count - 1)
    edges = draw(st.lists(st.tuples(node, node), max_size=80))
    shape = draw(st.sampled_from(["random", "chain", "reverse-chain", "star", "stars"]))
    if shape == "chain":
        edges += [(i, i + 1) for i in range(count - 1)]
    elif shape == "reverse-chain":  # the smallest label has to travel the whole chain
        edges += [(i + 1, i) for i in reversed(range(count - 1))]
    elif shape == "star":
        centre = draw(node)
        edges += [(centre, i) for i in range(count) if i != centre]
    elif shape == "stars":
        centres = draw(st.lists(node, min_size=1, max_size=4))
        edges += [(centres[i % len(centres)], i) for i in range(count)]
    edges += draw(st.lists(st.sampled_from(edges), max_size=10)) if edges else []  # repeats
    return count, edges


@settings(max_examples=300, deadline=None)
@given(graphs())
def test_connected_components_equal_bfs(graph: tuple[int, list[tuple[int, int]]]) -> None:
    count, edges = graph
    array = np.array(edges, dtype=np.int64).reshape(-1, 2)
    labels = connected_components(count, array)
    assert labels.dtype == np.int64
    assert labels.tolist() == oracle_components(count, edges)


def test_connected_components_examples() -> None:
    assert connected_components(0, np.zeros((0, 2), np.int64)).tolist() == []
    assert connected_components(4, np.zeros((0, 2), np.int64)).tolist() == [0, 1, 2, 3]
    edges = np.array([[5, 6], [1, 3], [3, 5], [2, 2]], dtype=np.int64)
    assert connected_components(8, edges).tolist() == [0, 1, 2, 1, 4, 1, 1, 7]


def test_pair_similarity() -> None:
    rng = np.random.default_rng(3)
    signatures = rng.integers(0, 3, size=(400, 8)).astype(np.uint32)
    # More than 2¹⁶ pairs: crosses the function's internal chunk boundary.
    pairs = np.array(list(itertools.combinations(range(400), 2))[:70_000], dtype=np.int64)
    got = pair_similarity(signatures, pairs)
    expected = (signatures[pairs[:, 0]] == signatures[pairs[:, 1]]).sum(axis=1) / 8
    np.testing.assert_array_equal(got, expected)
    assert pair_similarity(signatures, np.zeros((0, 2), np.int64)).shape == (0,)
