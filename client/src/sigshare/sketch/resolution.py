"""Resolution vectors on the wire: what a member downloads to resolve its own items locally.

For member A and one kind, the hub sends ``R_A[p]`` = the number of *other* members whose filter
sets bit ``p``, with entries below ``quorum − 1`` zeroed (``sigshare.sketch.bloom``). One
unsigned byte per bit position (counts saturate at 255), in one of two encodings:

- ``u8-zlib``: zlib-compressed. A vector of a small forum or a high quorum is mostly zero runs
  and shrinks many times over;
- ``u8``: the bytes as they are. With many members near capacity almost every position has
  other holders and the counts are nearly random: zlib saves only about half, at ~70 MB/s on
  each side — seconds for a 10M-capacity kind — so the hub sends them raw unless compression
  saves at least two thirds.

:func:`choose_encoding` decides from a sample; decoders are capped at ``m`` bytes.
"""

from __future__ import annotations

import zlib

import numpy as np
import numpy.typing as npt

from sigshare.sketch.errors import FormatError

RAW = "u8"
ZLIB = "u8-zlib"
ENCODINGS = (RAW, ZLIB)
ENCODING = ZLIB
"""The default, and what every hub before ``u8`` sent."""
_LEVEL = 1  # mostly zero runs: level 1 is within a few per cent of level 9
_SAMPLE_BYTES = 1 << 20
_WORTH_COMPRESSING = 0.35
"""Compress only when a sample shrinks to at most this fraction of its size."""


def _clip(resolution: npt.NDArray[np.integer]) -> npt.NDArray[np.uint8]:
    if resolution.dtype == np.uint8:
        contiguous: npt.NDArray[np.uint8] = np.ascontiguousarray(resolution)
        return contiguous
    clipped: npt.NDArray[np.uint8] = np.minimum(resolution, 255).astype(np.uint8)
    return clipped


def choose_encoding(resolution: npt.NDArray[np.integer]) -> str:
    """``u8-zlib`` if evenly spaced samples of the vector compress well, else ``u8``."""
    clipped = _clip(resolution)
    if clipped.size <= _SAMPLE_BYTES:
        sample = clipped.tobytes()
    else:
        pieces = 16
        step = clipped.size // pieces
        width = _SAMPLE_BYTES // pieces
        sample = b"".join(clipped[i * step : i * step + width].tobytes() for i in range(pieces))
    if not sample:
        return ZLIB
    ratio = len(zlib.compress(sample, _LEVEL)) / len(sample)
    return ZLIB if ratio <= _WORTH_COMPRESSING else RAW


def encode_resolution(resolution: npt.NDArray[np.integer], encoding: str = ENCODING) -> bytes:
    """Encode a resolution vector (any unsigned integer dtype; values above 255 saturate)."""
    clipped = _clip(resolution)
    if encoding == ZLIB:
        return zlib.compress(clipped.tobytes(), _LEVEL)
    if encoding == RAW:
        return clipped.tobytes()
    raise FormatError(f"unknown resolution encoding {encoding!r}; known: {', '.join(ENCODINGS)}")


def decode_resolution(data: bytes, m: int, encoding: str = ENCODING) -> npt.NDArray[np.uint8]:
    """Decode exactly ``m`` counts, refusing anything longer, shorter or corrupt."""
    if encoding == RAW:
        if len(data) != m:
            raise FormatError(f"resolution vector is {len(data)} bytes, expected {m}")
        return np.frombuffer(data, dtype=np.uint8)
    if encoding != ZLIB:
        raise FormatError(
            f"unknown resolution encoding {encoding!r}; known: {', '.join(ENCODINGS)}"
        )
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(data, m)
    except zlib.error as error:
        raise FormatError(f"corrupt resolution vector: {error}") from None
    if len(raw) != m or inflater.unconsumed_tail or inflater.unused_data or not inflater.eof:
        raise FormatError(f"resolution vector does not decode to exactly {m} counts")
    return np.frombuffer(raw, dtype=np.uint8)
