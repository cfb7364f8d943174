"""Keyed Bloom filters over 128-bit tokens.

Bit positions come from the token by double hashing in 32-bit space followed by a multiply-shift
range reduction (no modulo on the hot path)::

    h1 = token word 0 (uint32, little-endian)      h2 = token word 1 | 1
    g_i = (h1 + i·h2) mod 2³²                      p_i = (g_i · m) >> 32      for i in 0..k-1

Bit ``p`` lives in byte ``p >> 3`` at bit ``p & 7`` (least significant first). Every member uses
the hub's ``(m, k, key_id)`` for a kind, so filters combine bitwise. ``m`` is a multiple of 64
so the bit array is a whole number of uint64 words; ``m ≤ 2³²``.
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

from sigshare.sketch.aggregate import Counts, empty_counts, replace_filter, resolution_for
from sigshare.sketch.errors import ParameterError
from sigshare.sketch.keys import KEY_ID_RULE, is_valid_key_id
from sigshare.sketch.prf import KeyedPRF, TokenArray

MAX_BITS = 1 << 32
MAX_HASHES = 64
WORD_BITS = 64
_LN2 = math.log(2.0)
_BOOL_SCATTER_RATIO = 32  # above m/32 positions, unpack → scatter → pack beats ufunc.at
_POSITION_CHUNK = 1 << 14  # tokens per chunk: keeps the (k, n) temporaries cache-friendly

Bits = npt.NDArray[np.uint8]
Positions = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class BloomParams:
    """Parameters every member of a forum uses for one kind in one key epoch."""

    kind: str
    key_id: str
    m: int
    """Number of bits (multiple of 64)."""
    k: int
    """Number of hash positions per item."""
    capacity: int
    """Most distinct items a member may declare."""
    target_fpr: float
    """False-positive rate at ``capacity`` items that ``m`` and ``k`` were chosen for."""

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

    @property
    def nbytes(self) -> int:
        return self.m // 8

    def expected_fill(self, count: int) -> float:
        """Expected fraction of set bits after ``count`` distinct items: 1 − (1 − 1/m)^(k·count)."""
        return -math.expm1(self.k * count * math.log1p(-1.0 / self.m))

    def fill_stddev(self, count: int) -> float:
        """Standard deviation of the fill fraction after ``count`` items.

        Var(set bits) = m·e^(−λ)·(1 − (1 + λ)·e^(−λ)) with λ = k·count/m (occupancy variance).
        """
        lam = self.k * count / self.m
        zero = math.exp(-lam)
        variance = self.m * zero * (1.0 - (1.0 + lam) * zero)
        return math.sqrt(max(variance, 0.0)) / self.m

    def fpr_at_fill(self, fill: float) -> float:
        """False-positive rate of a filter whose fraction of set bits is ``fill``: fill^k."""
        return float(fill**self.k)

    def digest(self) -> bytes:
        """SHA-256 of the canonical JSON of what members must agree on to combine filters.

        ``{"capacity":…,"format":"sigshare/bloom-params/v1","k":…,"key_id":…,"kind":…,"m":…}``
        with sorted keys and no white space; the target FPR is implied by ``m`` and ``k``.
        """
        document = {
            "capacity": self.capacity,
            "format": "sigshare/bloom-params/v1",
            "k": self.k,
            "key_id": self.key_id,
            "kind": self.kind,
            "m": self.m,
        }
        return hashlib.sha256(
            json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
        ).digest()


def bit_positions(tokens: TokenArray, m: int, k: int) -> Positions:
    """The bit positions of ``tokens``, shape ``(k, n)``: row ``i`` holds every token's ``p_i``.

    Rows are contiguous so membership can AND ``k`` gathered rows without strided access; the
    values are below ``m ≤ 2³²``, so the uint64 arithmetic is reinterpreted as intp for free.
    """
    words = np.ascontiguousarray(tokens, dtype="<u8").view("<u4").reshape(-1, 4)
    h1 = words[:, 0]
    h2 = words[:, 1] | np.uint32(1)
    g = np.multiply(np.arange(k, dtype=np.uint32)[:, None], h2[None, :])
    g += h1[None, :]
    positions = g.astype(np.uint64)
    positions *= np.uint64(m)
    positions >>= np.uint64(32)
    as_index: Positions = positions.view(np.int64)
    return as_index


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


def count_vector(filters: Iterable[BloomFilter]) -> Counts:
    """Per-bit count of filters that set that bit: ``C = Σ B_i`` (all filters share parameters)."""
    total: Counts | None = None
    params: BloomParams | None = None
    for bloom in filters:
        if params is None:
            params = bloom.params
            total = empty_counts(params.m)
        elif bloom.params != params:
            raise ParameterError("filters have different parameters and cannot be counted together")
        assert total is not None
        replace_filter(total, bloom.bits, None)
    if total is None:
        raise ParameterError("count_vector needs at least one filter")
    return total


def resolution_vector(counts: Counts, own: BloomFilter, quorum: int) -> Counts:
    """``R = C − B_own`` with entries below ``quorum − 1`` zeroed.

    For an item of the requester, ``min`` of ``R`` over its ``k`` positions bounds how many
    *other* members hold it; zeroing below ``quorum − 1`` hides items fewer than ``quorum``
    members hold in total (the requester included).
    """
    if counts.shape != (own.params.m,):
        raise ParameterError("count vector and filter differ in size")
    return resolution_for(counts, own.bits, quorum)


def resolve_tokens(
    resolution: npt.NDArray[np.unsignedinteger], params: BloomParams, tokens: TokenArray
) -> npt.NDArray[np.uint16]:
    """For each token, ``min`` over its ``k`` positions of the resolution vector."""
    out = np.empty(len(tokens), dtype=np.uint16)
    for start in range(0, len(tokens), _POSITION_CHUNK):
        chunk = tokens[start : start + _POSITION_CHUNK]
        positions = bit_positions(chunk, params.m, params.k)
        np.minimum.reduce(resolution[positions], axis=0, out=out[start : start + len(chunk)])
    return out
