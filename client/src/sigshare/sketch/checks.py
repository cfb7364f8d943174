"""Checks a hub (and a careful member, before upload) runs on every Bloom filter.

A filter is accepted only if its parameters are the published ones, its declared count is within
capacity, its fill is what that count produces, its false-positive rate at that fill is at most
twice the target, and its bits look like hash output rather than a crafted pattern. A poisoning
member who sets extra bits to make guessed values "match" must raise the fill, which these
checks bound; every rejection says which check failed.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sigshare.sketch.bloom import BloomFilter, BloomParams
from sigshare.sketch.codec import BLOOM_HEADER_MAX_BYTES, read_bloom_header
from sigshare.sketch.errors import FormatError, ParameterError, SaturationError

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


def _popcount_pairs(data: npt.NDArray[np.uint8]) -> npt.NDArray[np.int64]:
    """Counts of ``data``'s byte pairs by their popcounts (``lo + 256 * hi``); an odd last
    byte is left to :func:`_odd_byte`."""
    histogram = np.zeros(_PAIR_BINS, dtype=np.int64)
    even = data.size - data.size % 2
    step = 2 * _HISTOGRAM_CHUNK
    for start in range(0, even, step):
        pairs = np.bitwise_count(data[start : min(start + step, even)]).view(np.uint16)
        histogram += np.bincount(pairs, minlength=_PAIR_BINS)
    return histogram


def _fold_pairs(
    pairs: npt.NDArray[np.int64], singles: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    """Bytes by popcount from pair counts and the popcounts of bytes counted alone."""
    weights = pairs.astype(np.float64)
    # Bins with a low byte above 8 are never hit; their zero weights fold past index 8.
    folded: npt.NDArray[np.float64] = (
        np.bincount(_PAIR_LOW, weights=weights, minlength=256)[:9]
        + np.bincount(_PAIR_HIGH, weights=weights, minlength=9)[:9]
        + singles
    ).astype(np.float64)
    return folded


def _odd_byte(data: npt.NDArray[np.uint8]) -> npt.NDArray[np.int64]:
    singles = np.zeros(9, dtype=np.int64)
    if data.size % 2:
        singles[int(np.bitwise_count(data[-1]))] += 1
    return singles


def byte_popcount_histogram(
    bits: npt.NDArray[np.uint8] | bytes | memoryview,
) -> npt.NDArray[np.float64]:
    """How many bytes have 0, 1, …, 8 bits set.

    The per-byte popcounts are read two at a time as ``uint16`` (``lo + 256 * hi``, at most
    2,056), counted in cache-sized chunks and folded back to bytes: half the elements of one
    bincount per byte, temporaries that stay in cache (numpy widens every counted element to
    intp, so a single bincount of the whole array would allocate eight bytes per byte), and a
    table that does too.
    """
    data = np.frombuffer(bits, dtype=np.uint8)
    return _fold_pairs(_popcount_pairs(data), _odd_byte(data))


class _BitsOfStream:
    """The bits of an encoded filter arriving in chunks: the header is held back and parsed,
    the rest passed on. ``usable`` turns false for a header that does not parse or
    compressed bits."""

    def __init__(self) -> None:
        self._head = bytearray()
        self.offset: int | None = None
        self.usable = True

    def bits(self, chunk: bytes | memoryview) -> bytes | memoryview:
        if not self.usable:
            return b""
        if self.offset is not None:
            return chunk
        self._head += chunk
        if len(self._head) < BLOOM_HEADER_MAX_BYTES:
            return b""
        try:
            header = read_bloom_header(bytes(self._head))
        except FormatError:
            self.usable = False
            return b""
        if header.compressed:
            self.usable = False
            return b""
        self.offset = header.payload_offset
        rest, self._head = bytes(self._head[self.offset :]), bytearray()
        return rest


class StreamedFilter:
    """What the hub checks of an encoded filter that it can count while the filter streams in,
    chunk by chunk: the CRC-32 and the :func:`byte_popcount_histogram` of its bits (see
    :func:`~sigshare.sketch.codec.decode_bloom`'s ``bits_crc32`` and :func:`check_filter`'s
    ``byte_histogram``). A stream whose header does not parse, or whose bits are compressed,
    gets no figures: the decoder reports what is wrong with it.

    :meth:`consumers` are two functions that may run on two threads, each fed every chunk in
    order (the CRC releases the GIL, most of the histogram does not); :meth:`add` feeds both.
    """

    def __init__(self) -> None:
        self._for_crc = _BitsOfStream()
        self._for_histogram = _BitsOfStream()
        self._crc = 0
        self._pairs = np.zeros(_PAIR_BINS, dtype=np.int64)
        self._singles = np.zeros(9, dtype=np.int64)

    def _add_crc(self, chunk: bytes | memoryview) -> None:
        bits = self._for_crc.bits(chunk)
        if bits:
            self._crc = zlib.crc32(bits, self._crc)

    def _add_histogram(self, chunk: bytes | memoryview) -> None:
        bits = self._for_histogram.bits(chunk)
        if bits:
            data = np.frombuffer(bits, dtype=np.uint8)
            self._pairs += _popcount_pairs(data)
            self._singles += _odd_byte(data)

    def consumers(self) -> tuple[Callable[[bytes], None], Callable[[bytes], None]]:
        return self._add_crc, self._add_histogram

    def add(self, chunk: bytes | memoryview) -> None:
        self._add_crc(chunk)
        self._add_histogram(chunk)

    def figures(self) -> tuple[int, npt.NDArray[np.float64]] | None:
        """The bits' CRC-32 and byte-popcount histogram, or ``None`` (see the class)."""
        streams = (self._for_crc, self._for_histogram)
        if not all(stream.usable and stream.offset is not None for stream in streams):
            return None
        return self._crc, _fold_pairs(self._pairs, self._singles)


def measure(
    bloom: BloomFilter, *, byte_histogram: npt.NDArray[np.float64] | None = None
) -> FilterHealth:
    """Compute every figure the checks use, without judging. ``byte_histogram``: the
    :func:`byte_popcount_histogram` of ``bloom.bits``, when the caller counted it already."""
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
        if byte_histogram is None:
            byte_histogram = byte_popcount_histogram(bloom.bits)
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


def check_filter(
    bloom: BloomFilter,
    published: BloomParams,
    *,
    byte_histogram: npt.NDArray[np.float64] | None = None,
) -> FilterHealth:
    """Accept ``bloom`` against the ``published`` parameters or raise a typed error saying why.

    ``byte_histogram``: see :func:`measure`; only ever one the caller counted itself from the
    same bytes (the hub, from the stream it received), never one a sender supplied.
    """
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
    health = measure(bloom, byte_histogram=byte_histogram)
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
