"""Versioned byte formats for Bloom filters and MinHash signature sets, and the names of the
payload formats a member submits (:class:`SketchFormat`).

All integers are little-endian. Both formats start with a 4-byte magic and a version byte so a
reader can refuse what it does not understand, carry the parameters needed to check them against
the forum's, and end with a CRC-32 over the *uncompressed* payload so corruption at rest or in
transit is caught even when the transport's own checksum is not.

Bloom filter, version 2 (header 32 bytes + key id)::

    0   4  magic  b"SGBF"
    4   1  version = 2
    5   1  kind wire code (see sigshare.sketch.kinds)
    6   2  flags: bit 0 = payload is zlib-compressed; other bits must be 0
    8   8  m (bits, multiple of 64)
    16  8  declared count
    24  1  k
    25  1  key id length L (1..32)
    26  2  reserved, 0
    28  4  CRC-32 of the uncompressed bit array
    32  L  key id, ASCII
    ..     payload: m/8 bytes of bits (bit p at byte p>>3, bit p&7), or their zlib stream

Version 2 has the layout of version 1; what changed is where an item's bits are (``k`` distinct
positions by Floyd's sampling, :mod:`sigshare.sketch.bloom`). A version 1 filter would decode
without error yet answer membership wrongly, so it is refused with a message saying to rebuild.

MinHash signature set, version 1 (header 24 bytes + key id)::

    0   4  magic  b"SGMH"
    4   1  version = 1
    5   1  shingle unit: 1 = words, 2 = characters
    6   1  shingle size n
    7   1  key id length L (1..32)
    8   2  P, values per signature
    10  2  flags, 0
    12  4  N, number of signatures
    16  4  CRC-32 of the payload
    20  4  reserved, 0
    24  L  key id, ASCII
    ..     payload: N×P uint32 minima, row-major
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from sigshare.sketch.bloom import BloomFilter, BloomParams
from sigshare.sketch.errors import FormatError, UnknownKindError
from sigshare.sketch.keys import KEY_ID_PATTERN
from sigshare.sketch.kinds import KIND_TYPES, kind_name_for_code

BLOOM_MAGIC = b"SGBF"
BLOOM_VERSION = 2
_BLOOM_OLD_POSITIONS_VERSION = 1
FLAG_ZLIB = 0x0001
_BLOOM_HEADER = struct.Struct("<4sBBHQQBBHI")
COMPRESS_BELOW_FILL = 0.3
"""Encoders compress only sparse filters: at fill ≈ ½ hash output is incompressible."""

SIGNATURE_MAGIC = b"SGMH"
SIGNATURE_VERSION = 1
_SIGNATURE_HEADER = struct.Struct("<4sBBBBHHIII")
SHINGLE_UNIT_CODES = {"word": 1, "char": 2}
_SHINGLE_UNITS = {code: unit for unit, code in SHINGLE_UNIT_CODES.items()}


class SketchFormat(StrEnum):
    """What a submission's payload is: the one name of a sketch format for members and the hub.

    The values are the strings SDK callers pass and a member's local state stores; on the wire
    each member has a ``sigshare.v1.SketchFormat`` value (see :mod:`sigshare.sketch.wire`).
    """

    BLOOM_V1 = "bloom"
    """An encoded Bloom filter (:func:`encode_bloom`)."""
    CLUSTERS_V1 = "clusters"
    """Cluster signatures and descriptions (:func:`sigshare.sketch.wire.encode_cluster_set`)."""


@dataclass(frozen=True, slots=True)
class BloomHeader:
    """What the header of an encoded filter says, readable without decoding the bits."""

    kind: str
    key_id: str
    m: int
    k: int
    count: int
    compressed: bool
    crc32: int
    payload_offset: int


def _key_id_bytes(key_id: str) -> bytes:
    if not KEY_ID_PATTERN.fullmatch(key_id):
        raise FormatError(f"key id {key_id!r} cannot be encoded")
    return key_id.encode("ascii")


def _require_preamble(
    magic: bytes, version: int, want_magic: bytes, want_version: int, what: str
) -> None:
    if magic != want_magic:
        raise FormatError(f"not a sigshare {what} (bad magic)")
    if version != want_version:
        raise FormatError(f"unsupported {what} format version {version}")


def _read_key_id(data: bytes | memoryview, offset: int, length: int) -> str:
    raw = bytes(data[offset : offset + length])
    if len(raw) != length:
        raise FormatError("truncated: key id runs past the end")
    try:
        key_id = raw.decode("ascii")
    except UnicodeDecodeError:
        raise FormatError("key id is not ASCII") from None
    if not KEY_ID_PATTERN.fullmatch(key_id):
        raise FormatError("key id has characters a key id cannot have")
    return key_id


def encode_bloom(bloom: BloomFilter, *, compress: bool | None = None) -> bytes:
    """Serialise ``bloom``; ``compress=None`` compresses only filters sparse enough to gain."""
    params = bloom.params
    if params.kind not in KIND_TYPES:
        raise FormatError(f"kind {params.kind!r} has no wire code")
    raw = bloom.bits.tobytes()
    if compress is None:
        compress = bloom.fill() < COMPRESS_BELOW_FILL
    payload = zlib.compress(raw, 6) if compress else raw
    key_id = _key_id_bytes(params.key_id)
    header = _BLOOM_HEADER.pack(
        BLOOM_MAGIC,
        BLOOM_VERSION,
        KIND_TYPES[params.kind].code,
        FLAG_ZLIB if compress else 0,
        params.m,
        bloom.count,
        params.k,
        len(key_id),
        0,
        zlib.crc32(raw),
    )
    return header + key_id + payload


def read_bloom_header(data: bytes | memoryview) -> BloomHeader:
    """Parse and validate the header of an encoded filter."""
    if len(data) < _BLOOM_HEADER.size:
        raise FormatError(f"truncated: {len(data)} bytes is shorter than a filter header")
    magic, version, kind_code, flags, m, count, k, key_len, reserved, crc = (
        _BLOOM_HEADER.unpack_from(data)
    )
    if magic == BLOOM_MAGIC and version == _BLOOM_OLD_POSITIONS_VERSION:
        raise FormatError(
            "Bloom filter format version 1 uses the old bit positions: rebuild it with a current "
            "sigshare client"
        )
    _require_preamble(magic, version, BLOOM_MAGIC, BLOOM_VERSION, "Bloom filter")
    if flags & ~FLAG_ZLIB or reserved:
        raise FormatError("unknown flags or non-zero reserved bytes")
    try:
        kind = kind_name_for_code(kind_code)
    except UnknownKindError:
        raise FormatError(f"unknown kind code {kind_code}") from None
    if not 1 <= key_len <= 32:
        raise FormatError("key id length out of range")
    key_id = _read_key_id(data, _BLOOM_HEADER.size, key_len)
    return BloomHeader(
        kind=kind,
        key_id=key_id,
        m=m,
        k=k,
        count=count,
        compressed=bool(flags & FLAG_ZLIB),
        crc32=crc,
        payload_offset=_BLOOM_HEADER.size + key_len,
    )


BLOOM_HEADER_MAX_BYTES = _BLOOM_HEADER.size + 32
"""The longest a filter's header can be (the longest key id)."""


def decode_bloom(
    data: bytes | memoryview,
    params: BloomParams,
    *,
    copy: bool = True,
    bits_crc32: int | None = None,
) -> BloomFilter:
    """Decode a filter encoded for ``params``; anything else raises :class:`FormatError`.

    The parameters come from the caller (the forum's published ones), never from the bytes: a
    header that disagrees is refused before any payload is decompressed, and decompression is
    capped at the size ``m`` implies, so a compressed bomb cannot exhaust memory.
    ``copy=False``: an uncompressed filter's bits are a read-only view of ``data`` (for
    checking a filter without a second copy of it). ``bits_crc32``: the CRC-32 of an
    uncompressed filter's bits, when the caller computed it from the same bytes already.
    """
    header = read_bloom_header(data)
    for name, got, want in (
        ("kind", header.kind, params.kind),
        ("key id", header.key_id, params.key_id),
        ("m", header.m, params.m),
        ("k", header.k, params.k),
    ):
        if got != want:
            raise FormatError(f"filter {name} is {got!r}, expected {want!r}")
    payload = memoryview(data)[header.payload_offset :]
    raw: bytes | memoryview
    if header.compressed:
        inflater = zlib.decompressobj()
        try:
            raw = inflater.decompress(payload, params.nbytes)
        except zlib.error as error:
            raise FormatError(f"corrupt compressed payload: {error}") from None
        if inflater.unconsumed_tail or inflater.unused_data or not inflater.eof:
            raise FormatError("compressed payload does not decode to exactly m/8 bytes")
    else:
        raw = payload  # no intermediate copy: the array below is the only one
    if len(raw) != params.nbytes:
        raise FormatError(f"payload is {len(raw)} bytes, m={params.m} needs {params.nbytes}")
    crc = bits_crc32 if bits_crc32 is not None and not header.compressed else zlib.crc32(raw)
    if crc != header.crc32:
        raise FormatError("checksum mismatch: the filter is corrupted")
    bits = np.frombuffer(raw, dtype=np.uint8)
    return BloomFilter(params, bits.copy() if copy else bits, header.count)


@dataclass(frozen=True, slots=True)
class SignatureSet:
    """``N`` MinHash signatures of ``P`` uint32 minima, with the parameters that made them."""

    key_id: str
    shingle_unit: str
    shingle_size: int
    values: npt.NDArray[np.uint32]
    """Shape ``(N, P)``."""

    @property
    def num_perm(self) -> int:
        return int(self.values.shape[1])


def encode_signatures(signatures: SignatureSet) -> bytes:
    values = np.ascontiguousarray(signatures.values, dtype="<u4")
    if values.ndim != 2 or not 1 <= values.shape[1] <= 0xFFFF:
        raise FormatError("signatures must be an (N, P) array with 1 ≤ P ≤ 65535")
    if signatures.shingle_unit not in SHINGLE_UNIT_CODES or not 1 <= signatures.shingle_size <= 255:
        raise FormatError("unsupported shingle parameters")
    key_id = _key_id_bytes(signatures.key_id)
    payload = values.tobytes()
    header = _SIGNATURE_HEADER.pack(
        SIGNATURE_MAGIC,
        SIGNATURE_VERSION,
        SHINGLE_UNIT_CODES[signatures.shingle_unit],
        signatures.shingle_size,
        len(key_id),
        values.shape[1],
        0,
        values.shape[0],
        zlib.crc32(payload),
        0,
    )
    return header + key_id + payload


def decode_signatures(data: bytes) -> SignatureSet:
    if len(data) < _SIGNATURE_HEADER.size:
        raise FormatError(f"truncated: {len(data)} bytes is shorter than a signature header")
    magic, version, unit, size, key_len, perms, flags, count, crc, reserved = (
        _SIGNATURE_HEADER.unpack_from(data)
    )
    _require_preamble(magic, version, SIGNATURE_MAGIC, SIGNATURE_VERSION, "signature set")
    if flags or reserved:
        raise FormatError("unknown flags or non-zero reserved bytes")
    if unit not in _SHINGLE_UNITS or size == 0 or perms == 0:
        raise FormatError("invalid shingle or permutation parameters")
    if not 1 <= key_len <= 32:
        raise FormatError("key id length out of range")
    key_id = _read_key_id(data, _SIGNATURE_HEADER.size, key_len)
    start = _SIGNATURE_HEADER.size + key_len
    expected = count * perms * 4
    if len(data) - start != expected:
        raise FormatError(f"payload is {len(data) - start} bytes, {count}x{perms} needs {expected}")
    payload = data[start:]
    if zlib.crc32(payload) != crc:
        raise FormatError("checksum mismatch: the signatures are corrupted")
    values = np.frombuffer(payload, dtype="<u4").reshape(count, perms).astype(np.uint32)
    return SignatureSet(
        key_id=key_id, shingle_unit=_SHINGLE_UNITS[unit], shingle_size=size, values=values
    )
