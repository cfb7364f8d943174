"""Count vectors over many members' filters, updated incrementally, and resolution vectors.

``C[p]`` counts the active filters that set bit ``p`` (one byte per bit: at most 255 members per
forum). A new submission does ``C += new − old`` instead of re-summing every member. Work is done
in slices of the bit array so temporaries stay small (an unpacked slice is 8× its packed size).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from sigshare.sketch.errors import ParameterError

MAX_MEMBERS = 255
"""Counts are one byte per bit; a forum of more members needs a wider count vector."""
_SLICE_BYTES = 1 << 20  # packed bytes per step: 8 Mi counts

Counts = npt.NDArray[np.uint8]
Bits = npt.NDArray[np.uint8]


def empty_counts(m: int) -> Counts:
    return np.zeros(m, dtype=np.uint8)


def _check(counts: Counts, bits: Bits) -> None:
    if counts.dtype != np.uint8 or bits.dtype != np.uint8 or counts.size != bits.size * 8:
        raise ParameterError("count vector and filter bits differ in size or type")


def replace_filter(counts: Counts, new_bits: Bits | None, old_bits: Bits | None) -> None:
    """In place: ``C += new − old`` (either may be ``None``: a first submission or a removal).

    Raises before changing anything if the update would overflow or go negative, which only
    happens when the caller's bookkeeping of active filters is wrong.
    """
    for bits in (new_bits, old_bits):
        if bits is not None:
            _check(counts, bits)
    size = counts.size // 8
    # Validate first, then apply: a refused update leaves the vector untouched.
    for apply in (False, True):
        for start in range(0, size, _SLICE_BYTES):
            stop = min(start + _SLICE_BYTES, size)
            window = counts[8 * start : 8 * stop]
            delta = np.zeros(window.size, dtype=np.int16)
            if new_bits is not None:
                delta += np.unpackbits(new_bits[start:stop], bitorder="little")
            if old_bits is not None:
                delta -= np.unpackbits(old_bits[start:stop], bitorder="little")
            updated = window.astype(np.int16) + delta
            if not apply:
                if updated.min(initial=0) < 0 or updated.max(initial=0) > MAX_MEMBERS:
                    raise ParameterError("count vector update out of range: bookkeeping error")
            else:
                window[:] = updated.astype(np.uint8)


def resolution_for(counts: Counts, own_bits: Bits | None, quorum: int) -> Counts:
    """``R = C − B_own`` with entries below ``quorum − 1`` zeroed (``own_bits=None``: not a
    contributor, nothing subtracted)."""
    if quorum < 2:
        raise ParameterError("quorum must be at least 2")
    out = np.empty_like(counts)
    size = counts.size // 8
    if own_bits is not None:
        _check(counts, own_bits)
    for start in range(0, size, _SLICE_BYTES):
        stop = min(start + _SLICE_BYTES, size)
        window = counts[8 * start : 8 * stop]
        target = out[8 * start : 8 * stop]
        if own_bits is None:
            target[:] = window
        else:
            own = np.unpackbits(own_bits[start:stop], bitorder="little")
            if np.any(own > window):
                raise ParameterError("requester's filter is not part of the count vector")
            np.subtract(window, own, out=target)
        target[target < quorum - 1] = 0
    return out
