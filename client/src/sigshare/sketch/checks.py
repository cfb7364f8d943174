"""Checks a hub (and a careful member, before upload) runs on every Bloom filter.

A filter is accepted only if its parameters are the published ones, its declared count is within
capacity, its fill is what that count produces, its false-positive rate at that fill is at most
twice the target, and its bits look like hash output rather than a crafted pattern. A poisoning
member who sets extra bits to make guessed values "match" must raise the fill, which these
checks bound; every rejection says which check failed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sigshare.sketch.bloom import BloomFilter, BloomParams
from sigshare.sketch.errors import ParameterError, SaturationError

FILL_TOLERANCE_SIGMAS = 6.0
"""How far (in standard deviations) the fill may stray from the one the declared count implies."""
UNIFORMITY_SIGMAS = 8.0
"""Chi-square tail cut-off (in standard deviations of the statistic) for the pattern checks."""
MAX_FPR_FACTOR = 2.0
"""The FPR at the observed fill may be at most this multiple of the target."""
_BLOCK_BITS = 4096
_MIN_BLOCKS = 16


@dataclass(frozen=True, slots=True)
class FilterHealth:
    """What the checks measured; coordinators see these figures per submission."""

    set_bits: int
    fill: float
    expected_fill: float
    fill_z: float
    """(observed − expected set bits) / σ for the declared count."""
    fpr_at_fill: float
    block_chi2_z: float
    """Standardised chi-square of per-block popcounts (uniformity across the array)."""
    byte_chi2_z: float
    """Standardised chi-square of the per-byte popcount histogram (no periodic patterns)."""


def _chi2_z(statistic: float, dof: int) -> float:
    return (statistic - dof) / math.sqrt(2.0 * dof) if dof > 0 else 0.0


_HISTOGRAM_CHUNK = 1 << 20  # byte pairs per bincount: its intp temporary stays in cache
_PAIR_BINS = 8 * 256 + 8 + 1
"""Bins of a histogram of byte *pairs* by their popcounts: ``lo + 256 * hi`` for lo, hi ≤ 8."""
_PAIR_LOW = np.arange(_PAIR_BINS) % 256
_PAIR_HIGH = np.arange(_PAIR_BINS) // 256


def _byte_popcount_histogram(bits: npt.NDArray[np.uint8]) -> npt.NDArray[np.float64]:
    """How many bytes have 0, 1, …, 8 bits set.

    The per-byte popcounts are read two at a time as ``uint16`` (``lo + 256 * hi``, at most
    2,056), counted in cache-sized chunks and folded back to bytes: half the elements of one
    bincount per byte, and a table that stays in cache (numpy widens every counted element to
    intp, so a single bincount of the whole array would allocate eight bytes per byte).
    """
    counts = np.bitwise_count(bits)
    even = counts.size - counts.size % 2
    pairs = counts[:even].view(np.uint16)
    histogram = np.zeros(_PAIR_BINS, dtype=np.int64)
    for start in range(0, pairs.size, _HISTOGRAM_CHUNK):
        histogram += np.bincount(pairs[start : start + _HISTOGRAM_CHUNK], minlength=_PAIR_BINS)
    weights = histogram.astype(np.float64)
    # Bins with a low byte above 8 are never hit; their zero weights fold past index 8.
    folded: npt.NDArray[np.float64] = (
        np.bincount(_PAIR_LOW, weights=weights, minlength=256)[:9]
        + np.bincount(_PAIR_HIGH, weights=weights, minlength=9)[:9]
    ).astype(np.float64)
    if even != counts.size:
        folded[int(counts[-1])] += 1.0
    return folded


def measure(bloom: BloomFilter) -> FilterHealth:
    """Compute every figure the checks use, without judging."""
    params = bloom.params
    set_bits = bloom.set_bits()
    fill = set_bits / params.m
    expected = params.expected_fill(bloom.count)
    sigma_bits = params.fill_stddev(bloom.count) * params.m
    fill_z = (set_bits - expected * params.m) / max(sigma_bits, 1.0)
    block_z = byte_z = 0.0
    if 0.0 < fill < 1.0:
        variance_per_bit = fill * (1.0 - fill)
        blocks = params.m // _BLOCK_BITS
        if blocks >= _MIN_BLOCKS:
            block_counts = np.bitwise_count(
                bloom.bits[: blocks * _BLOCK_BITS // 8].view(np.uint64).reshape(blocks, -1)
            ).sum(axis=1, dtype=np.int64)
            deviations = block_counts - _BLOCK_BITS * fill
            block_stat = float((deviations**2).sum()) / (_BLOCK_BITS * variance_per_bit)
            block_z = _chi2_z(block_stat, blocks - 1)
        byte_histogram = _byte_popcount_histogram(bloom.bits)
        expected_histogram = bloom.bits.size * np.array(
            [math.comb(8, j) * fill**j * (1.0 - fill) ** (8 - j) for j in range(9)]
        )
        usable = expected_histogram >= 5.0  # chi-square needs populated cells
        if usable.sum() >= 2:
            byte_stat = float(
                (
                    (byte_histogram[usable] - expected_histogram[usable]) ** 2
                    / expected_histogram[usable]
                ).sum()
            )
            byte_z = _chi2_z(byte_stat, int(usable.sum()) - 1)
    return FilterHealth(
        set_bits=set_bits,
        fill=fill,
        expected_fill=expected,
        fill_z=fill_z,
        fpr_at_fill=params.fpr_at_fill(fill),
        block_chi2_z=block_z,
        byte_chi2_z=byte_z,
    )


def check_filter(bloom: BloomFilter, published: BloomParams) -> FilterHealth:
    """Accept ``bloom`` against the ``published`` parameters or raise a typed error saying why."""
    params = bloom.params
    for name in ("kind", "key_id", "m", "k"):
        got, want = getattr(params, name), getattr(published, name)
        if got != want:
            raise ParameterError(f"filter {name} is {got!r}, the forum uses {want!r}")
    if bloom.count > published.capacity:
        raise SaturationError(
            f"declared count {bloom.count} exceeds the capacity {published.capacity} for "
            f"{published.kind}"
        )
    health = measure(bloom)
    if health.fpr_at_fill > MAX_FPR_FACTOR * published.target_fpr:
        raise SaturationError(
            f"filter is {health.fill:.1%} full: its false-positive rate {health.fpr_at_fill:.2e} "
            f"exceeds {MAX_FPR_FACTOR:g}x the target {published.target_fpr:.2e}"
        )
    if abs(health.fill_z) > FILL_TOLERANCE_SIGMAS:
        direction = "more" if health.fill_z > 0 else "fewer"
        raise SaturationError(
            f"filter has {direction} bits set ({health.set_bits}) than {bloom.count} items "
            f"produce (expected {health.expected_fill * params.m:.0f}, {health.fill_z:+.1f} sigma)"
        )
    if health.block_chi2_z > UNIFORMITY_SIGMAS or health.byte_chi2_z > UNIFORMITY_SIGMAS:
        raise SaturationError(
            "filter bits are not spread like hash output (block z="
            f"{health.block_chi2_z:.1f}, byte z={health.byte_chi2_z:.1f}): crafted pattern"
        )
    return health
