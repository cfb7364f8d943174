"""Resolution vectors on the wire: what a member downloads to resolve its own items locally.

For member A and one kind, the hub sends ``R_A[p]`` = the number of *other* members whose filter
sets bit ``p``, with entries below ``quorum − 1`` zeroed (``sigshare.sketch.bloom``). Encoding
``u8-zlib``: one unsigned byte per bit position (counts saturate at 255), zlib-compressed —
mostly zeros, so it compresses well. The decoder is capped at ``m`` bytes.
"""

from __future__ import annotations

import zlib

import numpy as np
import numpy.typing as npt

from sigshare.sketch.errors import FormatError

ENCODING = "u8-zlib"
_LEVEL = 1  # the vector is mostly zero runs: level 1 is within a few per cent of level 9


def encode_resolution(resolution: npt.NDArray[np.integer]) -> bytes:
    """Encode a resolution vector (any unsigned integer dtype; values above 255 saturate)."""
    clipped = np.minimum(resolution, 255).astype(np.uint8)
    return zlib.compress(clipped.tobytes(), _LEVEL)


def decode_resolution(data: bytes, m: int) -> npt.NDArray[np.uint8]:
    """Decode exactly ``m`` counts, refusing anything longer, shorter or corrupt."""
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(data, m)
    except zlib.error as error:
        raise FormatError(f"corrupt resolution vector: {error}") from None
    if len(raw) != m or inflater.unconsumed_tail or inflater.unused_data or not inflater.eof:
        raise FormatError(f"resolution vector does not decode to exactly {m} counts")
    return np.frombuffer(raw, dtype=np.uint8)
