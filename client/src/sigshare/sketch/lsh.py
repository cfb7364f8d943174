"""Locality-sensitive hashing over MinHash signatures, as whole-array numpy joins.

A signature of ``P = b·r`` minima is cut into ``b`` bands of ``r`` rows; two signatures whose
Jaccard similarity is ``s`` share at least one identical band with probability
``1 − (1 − s^r)^b``, an S-curve that rises around the threshold. Candidates are the pairs that
share a band. Instead of one dictionary insert and lookup per signature and band, each band's
keys are sorted once and equal runs are expanded into pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sigshare.sketch.errors import ParameterError

_FMIX_1 = np.uint64(0xFF51AFD7ED558CCD)
_FMIX_2 = np.uint64(0xC4CEB9FE1A85EC53)
_ROW_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
_INTEGRATION_STEPS = 200

Pairs = npt.NDArray[np.int64]
"""Shape ``(n, 2)``: rows ``(i, j)`` with ``i < j``, sorted, no repeats."""


@dataclass(frozen=True, slots=True)
class Banding:
    bands: int
    rows: int

    def collision_probability(self, similarity: float) -> float:
        """Probability that two signatures of Jaccard ``similarity`` share a band."""
        return 1.0 - (1.0 - similarity**self.rows) ** self.bands


def _integrate(function: np.ndarray, start: float, stop: float) -> float:
    return float(np.trapezoid(function, dx=(stop - start) / (len(function) - 1)))


def optimal_banding(
    threshold: float,
    num_perm: int,
    false_positive_weight: float = 0.5,
    false_negative_weight: float = 0.5,
) -> Banding:
    """``(b, r)`` with ``b·r ≤ P`` minimising the weighted false-positive and false-negative areas.

    The false-positive area is ∫₀^θ P(collide | s) ds, the false-negative area
    ∫_θ^1 (1 − P(collide | s)) ds: the same objective datasketch's ``MinHashLSH`` minimises.
    """
    if not 0.0 < threshold < 1.0:
        raise ParameterError(f"threshold must be in (0, 1), got {threshold}")
    if abs(false_positive_weight + false_negative_weight - 1.0) > 1e-9:
        raise ParameterError("the two weights must sum to 1")
    low = np.linspace(0.0, threshold, _INTEGRATION_STEPS)
    high = np.linspace(threshold, 1.0, _INTEGRATION_STEPS)
    best: tuple[float, Banding] | None = None
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            false_positive = _integrate(1.0 - (1.0 - low**rows) ** bands, 0.0, threshold)
            false_negative = _integrate((1.0 - high**rows) ** bands, threshold, 1.0)
            error = false_positive_weight * false_positive + false_negative_weight * false_negative
            if best is None or error < best[0]:
                best = (error, Banding(bands, rows))
    assert best is not None
    return best[1]


def band_keys(signatures: npt.NDArray[np.uint32], banding: Banding) -> npt.NDArray[np.uint64]:
    """``(b, N)`` 64-bit keys, one per band and signature (equal bands ⇒ equal keys).

    A band of one or two rows is packed exactly; longer bands are mixed into 64 bits, so unequal
    bands collide with odds about 2⁻⁶⁴ per pair (callers verify candidates anyway).
    """
    count, perms = signatures.shape
    if banding.bands * banding.rows > perms:
        raise ParameterError(
            f"{banding.bands} bands of {banding.rows} rows need {banding.bands * banding.rows} "
            f"values, signatures have {perms}"
        )
    grouped = signatures[:, : banding.bands * banding.rows].reshape(
        count, banding.bands, banding.rows
    )
    if banding.rows <= 2:
        keys = grouped[:, :, 0].astype(np.uint64)
        if banding.rows == 2:
            keys |= grouped[:, :, 1].astype(np.uint64) << np.uint64(32)
        return np.ascontiguousarray(keys.T)
    keys = np.zeros((count, banding.bands), dtype=np.uint64)
    for row in range(banding.rows):
        keys *= _ROW_MULTIPLIER
        keys += grouped[:, :, row]
        keys ^= keys >> np.uint64(29)
    keys ^= keys >> np.uint64(33)
    keys *= _FMIX_1
    keys ^= keys >> np.uint64(33)
    keys *= _FMIX_2
    keys ^= keys >> np.uint64(33)
    # Rows of the result are bands: each band's sort then reads contiguous memory.
    return np.ascontiguousarray(keys.T)


def _runs(
    sorted_keys: npt.NDArray[np.uint64],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Start and length of every run of two or more equal keys."""
    if sorted_keys.size < 2:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    boundary = np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1
    starts = np.concatenate(([0], boundary))
    lengths = np.diff(np.concatenate((starts, [sorted_keys.size])))
    shared = lengths >= 2
    return starts[shared], lengths[shared]


def _normalise(first: npt.NDArray[np.int64], second: npt.NDArray[np.int64], count: int) -> Pairs:
    """Sorted unique ``(low, high)`` rows; pairs are de-duplicated as one int64 key each."""
    if first.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    low, high = np.minimum(first, second), np.maximum(first, second)
    keys = np.unique(low * count + high)
    return np.stack((keys // count, keys % count), axis=1)


def candidate_pairs(
    signatures: npt.NDArray[np.uint32],
    banding: Banding,
    groups: npt.NDArray[np.int64] | None = None,
) -> Pairs:
    """Every pair of signatures that shares at least one band.

    With ``groups`` (e.g. the member each signature came from), only pairs from different groups
    are returned. Work is proportional to the number of pairs, so callers with huge buckets of
    near-identical signatures (one member's own campaign) should use :func:`bucket_edges`.
    """
    keys = band_keys(signatures, banding)
    first_parts: list[npt.NDArray[np.int64]] = []
    second_parts: list[npt.NDArray[np.int64]] = []
    for band in keys:
        order = np.argsort(band)
        run_starts, run_lengths = _runs(band[order])
        if not run_starts.size:
            continue
        # Expand runs into pairs by distance d = 1, 2, ...: only runs longer than d take part.
        for distance in range(1, int(run_lengths.max())):
            alive = run_lengths > distance
            starts, lengths = run_starts[alive], run_lengths[alive]
            sizes = lengths - distance
            positions = np.repeat(starts - np.cumsum(sizes) + sizes, sizes) + np.arange(sizes.sum())
            first, second = order[positions], order[positions + distance]
            if groups is not None:
                cross = groups[first] != groups[second]
                first, second = first[cross], second[cross]
            first_parts.append(first)
            second_parts.append(second)
    if not first_parts:
        return np.zeros((0, 2), dtype=np.int64)
    return _normalise(np.concatenate(first_parts), np.concatenate(second_parts), len(signatures))


def bucket_edges(signatures: npt.NDArray[np.uint32], banding: Banding) -> Pairs:
    """Linear-size edges that connect every LSH bucket: each member to its bucket's first member
    and to its successor in the bucket. Enough for connected components, at O(N·b) cost even when
    one bucket holds a whole campaign."""
    keys = band_keys(signatures, banding)
    first_parts: list[npt.NDArray[np.int64]] = []
    second_parts: list[npt.NDArray[np.int64]] = []
    for band in keys:
        order = np.argsort(band)
        sorted_band = band[order]
        same_as_previous = np.zeros(order.size, dtype=np.bool_)
        same_as_previous[1:] = sorted_band[1:] == sorted_band[:-1]
        run_id = np.cumsum(~same_as_previous) - 1
        run_head = order[np.flatnonzero(~same_as_previous)][run_id]
        follower = np.flatnonzero(same_as_previous)
        first_parts += [run_head[follower], order[follower - 1]]
        second_parts += [order[follower], order[follower]]
    if not first_parts:
        return np.zeros((0, 2), dtype=np.int64)
    return _normalise(np.concatenate(first_parts), np.concatenate(second_parts), len(signatures))


def pair_similarity(signatures: npt.NDArray[np.uint32], pairs: Pairs) -> npt.NDArray[np.float64]:
    """Estimated Jaccard similarity of each pair (fraction of equal minima)."""
    out = np.empty(len(pairs), dtype=np.float64)
    step = 1 << 16
    for start in range(0, len(pairs), step):
        chunk = pairs[start : start + step]
        equal = signatures[chunk[:, 0]] == signatures[chunk[:, 1]]
        out[start : start + len(chunk)] = equal.mean(axis=1)
    return out


def connected_components(count: int, edges: Pairs) -> npt.NDArray[np.int64]:
    """Component label of each of ``count`` nodes: the smallest node index in its component."""
    labels = np.arange(count, dtype=np.int64)
    if not len(edges):
        return labels
    first, second = edges[:, 0], edges[:, 1]
    while True:
        # Hook each edge's larger label onto the smaller, then compress paths fully.
        low = np.minimum(labels[first], labels[second])
        before = labels.copy()
        np.minimum.at(labels, labels[first], low)
        np.minimum.at(labels, labels[second], low)
        while True:
            jumped = labels[labels]
            if np.array_equal(jumped, labels):
                break
            labels = jumped
        if np.array_equal(labels, before):
            return labels


__all__ = [
    "Banding",
    "Pairs",
    "band_keys",
    "bucket_edges",
    "candidate_pairs",
    "connected_components",
    "optimal_banding",
    "pair_similarity",
]
