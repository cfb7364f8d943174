"""Keyed Bloom filters over 128-bit tokens.

Every item sets exactly ``k`` *distinct* bits. Positions come from the token by enhanced double
hashing in 64-bit space followed by Floyd's sampling (Bentley & Floyd 1987)::

    h1 = uint64 LE of token bytes 0..7             h2 = uint64 LE of token bytes 8..15
    g_i = fmix64((h1 + i·h2 + (i³ − i)/6) mod 2⁶⁴)                           for i = 0 … k−1
    j_i = m − k + i       t_i = ⌊g_i · (j_i + 1) / 2⁶⁴⌋  (high 64 bits of the 128-bit product)
    p_i = j_i  if t_i ∈ {p_0, …, p_(i−1)},  else t_i

``fmix64`` is MurmurHash3's 64-bit finaliser (``x ^= x >> 33; x *= 0xff51afd7ed558ccd;
x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53; x ^= x >> 33``, all mod 2⁶⁴), a bijection that scatters
the evenly spaced double-hashing sequence: without it, the ``g_i`` of one token lie on a line,
collide less often than independent draws, and Floyd's top positions ``m − k + 1 … m − 1`` are
hit about 30 % less often than the rest. ``t_i`` is uniform on ``[0, j_i]`` for uniform ``g_i``,
so ``{p_0, …, p_(k−1)}`` is ``k`` distinct values in ``[0, m)`` — a uniformly random ``k``-subset
when the ``g_i`` are independent and uniform. The high product is exact in uint64 arithmetic:
with ``a = g >> 32``,
``b = g & 0xFFFFFFFF`` and a multiplier ``c ≤ 2³²``, ``⌊g·c/2⁶⁴⌋ = (a·c + ((b·c) >> 32)) >> 32``
and no intermediate exceeds 2⁶⁴ − 1. The work per token is fixed (``k(k−1)/2`` comparisons, no
retry loop), so tokens an adversary picks cost the hub exactly what any others cost.

Bit ``p`` lives in byte ``p >> 3`` at bit ``p & 7`` (least significant first). Every member uses
the hub's ``(m, k, key_id)`` for a kind, so filters combine bitwise. ``m`` is a multiple of 64
so the bit array is a whole number of uint64 words; ``m ≤ 2³²``.

Occupancy model: one item leaves a given bit unset with probability ``q = 1 − k/m`` exactly, and
two given bits both unset with probability ``q·(1 − k/(m − 1))``. The fill, its variance and
the false-positive rate below are exact under that model (positions uniform, items independent).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Self

import numpy as np
import numpy.typing as npt

from sigshare.sketch.errors import ParameterError
from sigshare.sketch.keys import KEY_ID_RULE, is_valid_key_id
from sigshare.sketch.prf import KeyedPRF, TokenArray

MAX_BITS = 1 << 32
MAX_HASHES = 64
WORD_BITS = 64
MAX_FORUM_MEMBERS = 250
"""Largest forum :meth:`BloomParams.for_forum` sizes filters for."""
_LN2 = math.log(2.0)
_BOOL_SCATTER_RATIO = 32  # above m/32 positions, unpack → scatter → pack beats ufunc.at
_POSITION_CHUNK = 1 << 14  # tokens per chunk: the (k, chunk) uint32 rows stay in L2

_STEPS = np.arange(MAX_HASHES, dtype=np.uint64)
_CUBIC = (_STEPS**3 - _STEPS) // np.uint64(6)  # (i³ − i)/6: the "enhanced" term
_HALF = np.uint64(32)
_LOW_HALF = np.uint64(0xFFFF_FFFF)
_FMIX_SHIFT = np.uint64(33)
_FMIX_1 = np.uint64(0xFF51_AFD7_ED55_8CCD)
_FMIX_2 = np.uint64(0xC4CE_B9FE_1A85_EC53)

Bits = npt.NDArray[np.uint8]
Positions = npt.NDArray[np.int64]


def log_keep(m: int, k: int) -> float:
    """ln(1 − k/m): log-probability that one item's ``k`` distinct positions miss a given bit
    (``−inf`` when ``k = m``: every item sets every bit)."""
    return math.log1p(-k / m) if k < m else -math.inf


def _scaled(count: float, log_value: float) -> float:
    """``count · log_value`` with ``0 · (−inf) = 0`` (no items keep every bit)."""
    return count * log_value if count else 0.0


def unset_covariance(m: int, k: int, n_s: float, n_t: float, n_shared: float) -> float:
    """Exact ``Cov(U_S, U_T)`` of the numbers of bits *unset* by item sets ``S`` and ``T``.

    ``|S| = n_s``, ``|T| = n_t``, ``|S ∩ T| = n_shared``; each item sets ``k`` distinct uniform
    positions independently. A bit escapes ``N`` items with probability ``q^N`` (``q = 1 − k/m``);
    two given bits both escape one item with probability ``q²·r``,
    ``r = 1 − k/((m − 1)(m − k))``. Summing over bit pairs (same bit, or two different bits)::

        Cov = m·q^(n_s + n_t − n_shared)·(1 − q^n_shared) + m(m − 1)·q^(n_s + n_t)·(r^n_shared − 1)

    (disjoint sets are independent: both terms vanish). ``S = T`` gives the variance of the
    unset (equivalently set) bit count of one filter.
    """
    if not 0 <= n_shared <= min(n_s, n_t):
        raise ParameterError("the shared items cannot exceed either set")
    log_q = log_keep(m, k)
    union = n_s + n_t - n_shared
    same_bit = m * math.exp(_scaled(union, log_q)) * -math.expm1(_scaled(n_shared, log_q))
    # log r; for m − k ≤ 1 no two distinct bits can both escape an item (r = 0).
    log_r = math.log1p(-k / ((m - 1) * (m - k))) if m - k > 1 else -math.inf
    pair_excess = math.expm1(_scaled(n_shared, log_r))
    two_bits = m * (m - 1) * math.exp(_scaled(n_s + n_t, log_q)) * pair_excess
    return same_bit + two_bits


@dataclass(frozen=True, slots=True)
class BloomParams:
    """Parameters every member of a forum uses for one kind in one key epoch."""

    kind: str
    key_id: str
    m: int
    """Number of bits (multiple of 64)."""
    k: int
    """Number of distinct hash positions per item."""
    capacity: int
    """Most distinct items a member may declare."""
    target_fpr: float
    """False-positive rate of one filter at ``capacity`` items that ``m`` and ``k`` were chosen
    for."""

    def __post_init__(self) -> None:
        if not is_valid_key_id(self.key_id):
            raise ParameterError(KEY_ID_RULE)
        if not 0 < self.m <= MAX_BITS or self.m % WORD_BITS:
            raise ParameterError(f"m must be a positive multiple of 64 up to 2^32, got {self.m}")
        if not 1 <= self.k <= MAX_HASHES:
            raise ParameterError(f"k must be between 1 and {MAX_HASHES}, got {self.k}")
        if self.capacity < 1:
            raise ParameterError(f"capacity must be positive, got {self.capacity}")
        if not 0.0 < self.target_fpr < 1.0:
            raise ParameterError(f"target FPR must be in (0, 1), got {self.target_fpr}")

    @classmethod
    def for_capacity(cls, kind: str, key_id: str, capacity: int, target_fpr: float) -> Self:
        """Optimal ``m`` (rounded up to 64 bits) and ``k`` for ``capacity`` items at the target."""
        if capacity < 1:
            raise ParameterError(f"capacity must be positive, got {capacity}")
        if not 0.0 < target_fpr < 1.0:
            raise ParameterError(f"target FPR must be in (0, 1), got {target_fpr}")
        bits = math.ceil(-capacity * math.log(target_fpr) / (_LN2 * _LN2))
        m = -(-bits // WORD_BITS) * WORD_BITS
        if m > MAX_BITS:
            raise ParameterError(
                f"{capacity} items at FPR {target_fpr} need {m} bits, more than 2^32: "
                "lower the capacity or raise the target FPR"
            )
        k = max(1, min(MAX_HASHES, round(m / capacity * _LN2)))
        return cls(kind=kind, key_id=key_id, m=m, k=k, capacity=capacity, target_fpr=target_fpr)

    @classmethod
    def for_forum(
        cls, kind: str, key_id: str, capacity: int, forum_fpr: float, max_members: int
    ) -> Self:
        """:meth:`for_capacity` at the per-filter rate ``forum_fpr / (max_members − 1)``.

        A value only one member holds is reported as held by another member when some other
        member's filter gives a false positive; with up to ``max_members − 1`` other filters at
        capacity, the union bound keeps that probability at most ``forum_fpr`` (the exact rate
        for a quorum is :func:`sigshare.sketch.estimators.false_shared_probability`).
        """
        if not 2 <= max_members <= MAX_FORUM_MEMBERS:
            raise ParameterError(
                f"max_members must be between 2 and {MAX_FORUM_MEMBERS}, got {max_members}"
            )
        if not 0.0 < forum_fpr < 1.0:
            raise ParameterError(f"forum FPR must be in (0, 1), got {forum_fpr}")
        return cls.for_capacity(kind, key_id, capacity, forum_fpr / (max_members - 1))

    @property
    def nbytes(self) -> int:
        return self.m // 8

    def expected_fill(self, count: int) -> float:
        """Expected fraction of set bits after ``count`` distinct items: 1 − (1 − k/m)^count."""
        return -math.expm1(_scaled(count, log_keep(self.m, self.k)))

    def fill_stddev(self, count: int) -> float:
        """Standard deviation of the fill fraction after ``count`` items (exact occupancy).

        ``Var(set bits) = m·q^n·(1 − q^n) + m(m − 1)·q^(2n)·(r^n − 1)`` with ``q = 1 − k/m``,
        ``r = 1 − k/((m − 1)(m − k))``: :func:`unset_covariance` of the filter with itself.
        """
        variance = unset_covariance(self.m, self.k, count, count, count)
        return math.sqrt(max(variance, 0.0)) / self.m

    def fpr_at_fill(self, fill: float) -> float:
        """False-positive rate of a filter whose fraction of set bits is ``fill``.

        A non-member's ``k`` distinct positions all land on the ``X = fill·m`` set bits with
        probability ``C(X, k)/C(m, k) = Π_(i<k) (X − i)/(m − i)``; ``fill^k`` is its large-``m``
        limit and an upper bound.
        """
        set_bits = fill * self.m
        rate = 1.0
        for i in range(self.k):
            rate *= max(set_bits - i, 0.0) / (self.m - i)
        return rate

    def digest(self) -> bytes:
        """SHA-256 of the canonical JSON of what members must agree on to combine filters.

        ``{"capacity":…,"format":"sigshare/bloom-params/v2","k":…,"key_id":…,"kind":…,"m":…}``
        with sorted keys and no white space; the target FPR is implied by ``m`` and ``k``. The
        format names the position derivation (v2: distinct positions by Floyd's sampling).
        """
        document = {
            "capacity": self.capacity,
            "format": "sigshare/bloom-params/v2",
            "k": self.k,
            "key_id": self.key_id,
            "kind": self.kind,
            "m": self.m,
        }
        return hashlib.sha256(
            json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
        ).digest()


def bit_positions(tokens: TokenArray, m: int, k: int) -> Positions:
    """The ``k`` distinct bit positions of each token, shape ``(k, n)``: row ``i`` holds ``p_i``.

    Rows are contiguous so membership can AND ``k`` gathered rows without strided access.
    Tokens are processed in chunks so the ``(k, chunk)`` temporaries stay in cache; the
    duplicate test of row ``i`` is ``i`` vector comparisons against rows ``0 … i−1``.
    """
    if not (1 <= k <= MAX_HASHES and k <= m <= MAX_BITS):
        raise ParameterError(f"need 1 ≤ k ≤ min(m, {MAX_HASHES}) and m ≤ 2^32, got m={m} k={k}")
    words = np.ascontiguousarray(tokens, dtype="<u8").reshape(-1, 2)
    n = words.shape[0]
    out: Positions = np.empty((k, n), dtype=np.int64)
    steps = _STEPS[:k, None]
    cubic = _CUBIC[:k, None]
    multipliers = np.uint64(m - k + 1) + steps  # j_i + 1 ≤ m ≤ 2³²
    fallbacks = (m - k + np.arange(k)).astype(np.uint32)  # j_i < 2³²
    width = min(_POSITION_CHUNK, n)
    g = np.empty((k, width), dtype=np.uint64)
    high = np.empty((k, width), dtype=np.uint64)
    chosen = np.empty((k, width), dtype=np.uint32)
    equal = np.empty((k, width), dtype=np.bool_)
    taken = np.empty(width, dtype=np.bool_)
    for start in range(0, n, _POSITION_CHUNK):
        chunk = words[start : start + _POSITION_CHUNK]
        size = chunk.shape[0]
        h1 = np.ascontiguousarray(chunk[:, 0])  # strided columns make the broadcasts 3x slower
        h2 = np.ascontiguousarray(chunk[:, 1])
        gc, hc, pc, tc = g[:, :size], high[:, :size], chosen[:, :size], taken[:size]
        np.multiply(steps, h2, out=gc)  # uint64 arithmetic wraps: everything is mod 2⁶⁴
        gc += h1
        gc += cubic
        for multiplier in (_FMIX_1, _FMIX_2):  # fmix64, with `high` as scratch
            np.right_shift(gc, _FMIX_SHIFT, out=hc)
            gc ^= hc
            gc *= multiplier
        np.right_shift(gc, _FMIX_SHIFT, out=hc)
        gc ^= hc
        np.right_shift(gc, _HALF, out=hc)  # a
        gc &= _LOW_HALF  # b
        gc *= multipliers  # b·c < 2⁶⁴
        gc >>= _HALF
        hc *= multipliers  # a·c ≤ (2³² − 1)·2³²
        hc += gc  # ≤ 2⁶⁴ − 1
        hc >>= _HALF  # t_i = ⌊g_i·c_i/2⁶⁴⌋ < c_i ≤ 2³²
        np.copyto(pc, hc, casting="unsafe")
        for row in range(1, k):
            matches = equal[:row, :size]
            np.equal(pc[:row], pc[row], out=matches)
            np.logical_or.reduce(matches, axis=0, out=tc)
            np.copyto(pc[row], fallbacks[row], where=tc)
        out[:, start : start + size] = pc
    return out


class BloomFilter:
    """A Bloom filter over tokens with the parameters of one kind and key epoch.

    ``count`` is the number of distinct items added, as declared to the hub; callers add each
    distinct token once (the member pipeline de-duplicates canonical values first).
    """

    __slots__ = ("bits", "count", "params")

    def __init__(self, params: BloomParams, bits: Bits | None = None, count: int = 0) -> None:
        self.params = params
        if bits is None:
            bits = np.zeros(params.nbytes, dtype=np.uint8)
        elif bits.dtype != np.uint8 or bits.shape != (params.nbytes,):
            raise ParameterError(
                f"bit array must be {params.nbytes} uint8 bytes, got {bits.dtype} {bits.shape}"
            )
        elif not bits.flags.c_contiguous:
            raise ParameterError("bit array must be contiguous")
        if count < 0:
            raise ParameterError("count must not be negative")
        self.bits = bits
        self.count = count

    def __repr__(self) -> str:
        p = self.params
        return (
            f"BloomFilter(kind={p.kind!r}, key_id={p.key_id!r}, m={p.m}, k={p.k}, "
            f"count={self.count})"
        )

    def add_tokens(self, tokens: TokenArray) -> None:
        """Set the bits of ``tokens`` (each a distinct item) and add them to ``count``."""
        params = self.params
        n = len(tokens)
        if self._dense(n):
            unpacked = np.unpackbits(self.bits, bitorder="little").view(np.bool_)
            for start in range(0, n, _POSITION_CHUNK):
                chunk = tokens[start : start + _POSITION_CHUNK]
                unpacked[bit_positions(chunk, params.m, params.k)] = True
            self.bits[:] = np.packbits(unpacked, bitorder="little")  # in place: callers may own it
        elif n:
            positions = bit_positions(tokens, params.m, params.k).ravel()
            masks = np.left_shift(np.uint8(1), (positions & 7).astype(np.uint8))
            np.bitwise_or.at(self.bits, positions >> 3, masks)
        self.count += n

    def contains_tokens(self, tokens: TokenArray) -> npt.NDArray[np.bool_]:
        """For each token, whether all its ``k`` bits are set (no false negatives)."""
        params = self.params
        n = len(tokens)
        out = np.empty(n, dtype=np.bool_)
        unpacked = (
            np.unpackbits(self.bits, bitorder="little").view(np.bool_) if self._dense(n) else None
        )
        for start in range(0, n, _POSITION_CHUNK):
            chunk = tokens[start : start + _POSITION_CHUNK]
            positions = bit_positions(chunk, params.m, params.k)
            if unpacked is not None:
                hits = unpacked[positions]
            else:
                hits = ((self.bits[positions >> 3] >> (positions & 7)) & 1).astype(np.bool_)
            np.logical_and.reduce(hits, axis=0, out=out[start : start + len(chunk)])
        return out

    def _dense(self, n: int) -> bool:
        """Whether ``n`` tokens touch enough bits that working on unpacked bytes is cheaper."""
        return n * self.params.k * _BOOL_SCATTER_RATIO > self.params.m

    def set_bits(self) -> int:
        """Number of bits set (population count)."""
        return popcount(self.bits)

    def fill(self) -> float:
        return self.set_bits() / self.params.m

    def union(self, other: BloomFilter) -> BloomFilter:
        """Bitwise OR with a filter of the same parameters. The count is an upper bound."""
        self._require_compatible(other)
        return BloomFilter(
            self.params, np.bitwise_or(self.bits, other.bits), self.count + other.count
        )

    def _require_compatible(self, other: BloomFilter) -> None:
        if other.params != self.params:
            raise ParameterError("filters have different parameters and cannot be combined")


class KeyedBloomFilter(BloomFilter):
    """A Bloom filter that tokenises raw canonical values itself with a keyed PRF."""

    __slots__ = ("_prf",)

    def __init__(
        self, params: BloomParams, prf: KeyedPRF, bits: Bits | None = None, count: int = 0
    ) -> None:
        super().__init__(params, bits, count)
        self._prf = prf

    def add(self, values: Sequence[str] | Iterable[str]) -> TokenArray:
        """Add distinct canonical ``values``; returns their tokens (for the local token map)."""
        tokens = self._prf.tokens(values)
        self.add_tokens(tokens)
        return tokens

    def contains(self, values: Sequence[str] | Iterable[str]) -> npt.NDArray[np.bool_]:
        return self.contains_tokens(self._prf.tokens(values))


def popcount(bits: Bits) -> int:
    """Number of set bits in a byte array."""
    if bits.size % 8 == 0:
        return int(np.bitwise_count(bits.view(np.uint64)).sum(dtype=np.uint64))
    return int(np.bitwise_count(bits).sum(dtype=np.uint64))


_AND_CHUNK_WORDS = 1 << 15  # 256 KiB of uint64 per step: the temporaries stay in L2


def and_popcount(a: Bits, b: Bits) -> int:
    """Population count of ``a AND b`` without materialising the AND of whole filters."""
    if a.shape != b.shape:
        raise ParameterError("bit arrays differ in size")
    if a.size % 8:
        return int(np.bitwise_count(np.bitwise_and(a, b)).sum(dtype=np.uint64))
    wa, wb = a.view(np.uint64), b.view(np.uint64)
    buffer = np.empty(min(_AND_CHUNK_WORDS, wa.size), dtype=np.uint64)
    counts = np.empty(buffer.size, dtype=np.uint8)
    total = 0
    for start in range(0, wa.size, _AND_CHUNK_WORDS):
        stop = min(start + _AND_CHUNK_WORDS, wa.size)
        width = stop - start
        np.bitwise_and(wa[start:stop], wb[start:stop], out=buffer[:width])
        np.bitwise_count(buffer[:width], out=counts[:width])
        total += int(counts[:width].sum(dtype=np.uint64))
    return total
