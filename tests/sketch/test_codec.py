"""Byte formats: golden files, header layout, round trips and refusal of every malformed input."""

from __future__ import annotations

import struct
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sigshare.sketch.bloom import BloomFilter, BloomParams, KeyedBloomFilter
from sigshare.sketch.codec import (
    BLOOM_MAGIC,
    FLAG_ZLIB,
    SIGNATURE_MAGIC,
    BloomHeader,
    SignatureSet,
    decode_bloom,
    decode_signatures,
    encode_bloom,
    encode_signatures,
    read_bloom_header,
)
from sigshare.sketch.errors import FormatError
from sigshare.sketch.kinds import KIND_TYPES
from sigshare.sketch.prf import KeyedPRF

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
GOLDEN_KEY = bytes(range(32))
GOLDEN_VALUES = ["a@example.com", "b@example.com", "c@example.com"]
GOLDEN_PARAMS = BloomParams.for_capacity("email", "golden-1", 64, 0.01)
PROPERTY = settings(
    derandomize=True,
    deadline=None,
    max_examples=150,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
KEY_IDS = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}", fullmatch=True)
BLOOM_HEADER_SIZE = 32
SIGNATURE_HEADER_SIZE = 24


def golden_bloom() -> KeyedBloomFilter:
    bloom = KeyedBloomFilter(GOLDEN_PARAMS, KeyedPRF(GOLDEN_KEY))
    bloom.add(GOLDEN_VALUES)
    return bloom


def golden_signatures() -> SignatureSet:
    values = ((np.arange(24, dtype=np.uint64) * 2654435761 + 12345) % 2**32).astype(np.uint32)
    return SignatureSet("golden-1", "word", 3, values.reshape(3, 8))


def golden(name: str) -> bytes:
    return (GOLDEN / name).read_bytes()


def patched(data: bytes, offset: int, fmt: str, value: int | bytes) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


def with_crc(data: bytes, crc_offset: int, payload: bytes) -> bytes:
    """``data`` with its CRC field recomputed over ``payload`` (so only the tested field fails)."""
    return patched(data, crc_offset, "<I", zlib.crc32(payload))


def expect_format_error(data: bytes, params: BloomParams = GOLDEN_PARAMS) -> FormatError:
    with pytest.raises(FormatError) as caught:
        decode_bloom(data, params)
    return caught.value


def expect_signature_error(data: bytes) -> FormatError:
    with pytest.raises(FormatError) as caught:
        decode_signatures(data)
    return caught.value


# ----------------------------------------------------------------------------- golden files


def test_golden_parameters() -> None:
    assert (GOLDEN_PARAMS.m, GOLDEN_PARAMS.k) == (640, 7)
    assert KIND_TYPES["email"].code == 1


def test_golden_bloom_raw_bytes() -> None:
    bloom = golden_bloom()
    data = golden("bloom_v2_raw.bin")
    assert encode_bloom(bloom, compress=False) == data
    assert len(data) == BLOOM_HEADER_SIZE + len("golden-1") + 640 // 8
    assert data[40:] == bloom.bits.tobytes()
    decoded = decode_bloom(data, GOLDEN_PARAMS)
    assert np.array_equal(decoded.bits, bloom.bits)
    assert decoded.count == 3
    assert decoded.params == GOLDEN_PARAMS
    # The golden filter still answers membership for its values under the golden key.
    assert (
        KeyedBloomFilter(GOLDEN_PARAMS, KeyedPRF(GOLDEN_KEY), decoded.bits, 3)
        .contains(GOLDEN_VALUES)
        .all()
    )


def test_golden_bloom_zlib_bytes() -> None:
    # The compressed golden pins zlib level 6 output of zlib 1.2.x (see tests/golden/README.md).
    bloom = golden_bloom()
    data = golden("bloom_v2_zlib.bin")
    assert encode_bloom(bloom, compress=True) == data
    assert encode_bloom(bloom) == data  # fill ≈ 3% < 30%: compressed by default
    assert zlib.decompress(data[40:]) == bloom.bits.tobytes()
    decoded = decode_bloom(data, GOLDEN_PARAMS)
    assert np.array_equal(decoded.bits, bloom.bits)
    assert decoded.count == 3


def test_golden_bloom_header_layout() -> None:
    raw, packed = golden("bloom_v2_raw.bin"), golden("bloom_v2_zlib.bin")
    bits = golden_bloom().bits.tobytes()
    for data, flags in ((raw, 0), (packed, 1)):
        assert data[0:4] == b"SGBF" == BLOOM_MAGIC
        assert struct.unpack_from("<B", data, 4) == (2,)  # version
        assert struct.unpack_from("<B", data, 5) == (1,)  # kind wire code: email
        assert struct.unpack_from("<H", data, 6) == (flags,)  # bit 0: zlib
        assert struct.unpack_from("<Q", data, 8) == (640,)  # m
        assert struct.unpack_from("<Q", data, 16) == (3,)  # declared count
        assert struct.unpack_from("<B", data, 24) == (7,)  # k
        assert struct.unpack_from("<B", data, 25) == (8,)  # key id length
        assert struct.unpack_from("<H", data, 26) == (0,)  # reserved
        assert struct.unpack_from("<I", data, 28) == (zlib.crc32(bits),)  # CRC of raw bits
        assert struct.unpack_from("<I", data, 28) == (0x4F8447E5,)
        assert data[32:40] == b"golden-1"
    assert read_bloom_header(raw) == BloomHeader(
        kind="email",
        key_id="golden-1",
        m=640,
        k=7,
        count=3,
        compressed=False,
        crc32=0x4F8447E5,
        payload_offset=40,
    )
    assert read_bloom_header(packed).compressed is True


V1_MESSAGE = (
    "Bloom filter format version 1 uses the old bit positions: rebuild it with a current "
    "sigshare client"
)


@pytest.mark.parametrize("name", ["bloom_v1_raw.bin", "bloom_v1_zlib.bin"])
def test_version_1_filters_are_refused_with_a_rebuild_message(name: str) -> None:
    data = golden(name)
    assert data[4] == 1  # the frozen v1 golden files, byte for byte as v1 encoders wrote them
    assert str(expect_format_error(data)) == V1_MESSAGE
    with pytest.raises(FormatError) as caught:
        read_bloom_header(data)
    assert str(caught.value) == V1_MESSAGE


def test_version_1_bits_do_not_answer_for_version_2_positions() -> None:
    # Why v1 is refused rather than read: its header is otherwise valid and its CRC covers only
    # the bits, so relabelled as v2 it decodes — and then misses its own values (each of the
    # three values' 7 distinct positions would have to land on the 19 set bits of 640).
    v1 = golden("bloom_v1_raw.bin")
    assert v1[:4] + bytes([2]) + v1[5:28] == golden("bloom_v2_raw.bin")[:28]
    relabelled = decode_bloom(patched(v1, 4, "<B", 2), GOLDEN_PARAMS)
    keyed = KeyedBloomFilter(GOLDEN_PARAMS, KeyedPRF(GOLDEN_KEY), relabelled.bits, 3)
    assert not keyed.contains(GOLDEN_VALUES).any()
    assert golden_bloom().contains(GOLDEN_VALUES).all()


def test_golden_signatures() -> None:
    data = golden("signatures_v1.bin")
    signatures = golden_signatures()
    assert encode_signatures(signatures) == data
    payload = signatures.values.astype("<u4").tobytes()
    assert data[0:4] == b"SGMH" == SIGNATURE_MAGIC
    assert struct.unpack_from("<BBBB", data, 4) == (1, 1, 3, 8)  # version, unit word, n, L
    assert struct.unpack_from("<HH", data, 8) == (8, 0)  # P, flags
    assert struct.unpack_from("<I", data, 12) == (3,)  # N
    assert struct.unpack_from("<I", data, 16) == (zlib.crc32(payload),)
    assert struct.unpack_from("<I", data, 20) == (0,)  # reserved
    assert data[24:32] == b"golden-1"
    assert data[32:] == payload
    assert len(data) == SIGNATURE_HEADER_SIZE + 8 + 3 * 8 * 4
    decoded = decode_signatures(data)
    assert (decoded.key_id, decoded.shingle_unit, decoded.shingle_size) == ("golden-1", "word", 3)
    assert decoded.num_perm == 8
    assert decoded.values.dtype == np.uint32
    assert np.array_equal(decoded.values, signatures.values)
    assert int(decoded.values[0, 0]) == 12345


# ----------------------------------------------------------------------------- round trips


@st.composite
def bloom_filters(draw: st.DrawFn) -> BloomFilter:
    words = draw(st.integers(1, 40))
    params = BloomParams(
        kind=draw(st.sampled_from(sorted(KIND_TYPES))),
        key_id=draw(KEY_IDS),
        m=64 * words,
        k=draw(st.integers(1, 64)),
        capacity=draw(st.integers(1, 10**6)),
        target_fpr=0.01,
    )
    density = draw(st.sampled_from([0.0, 0.02, 0.5, 1.0]))
    seed = draw(st.integers(0, 2**32 - 1))
    bits = np.packbits(np.random.default_rng(seed).random(params.m) < density, bitorder="little")
    return BloomFilter(params, bits, draw(st.integers(0, 2**64 - 1)))


@PROPERTY
@given(bloom=bloom_filters(), compress=st.sampled_from([True, False, None]))
def test_bloom_round_trip(bloom: BloomFilter, compress: bool | None) -> None:
    data = encode_bloom(bloom, compress=compress)
    header = read_bloom_header(data)
    expect_compressed = bloom.fill() < 0.3 if compress is None else compress
    assert header.compressed is expect_compressed
    assert (header.kind, header.key_id, header.m, header.k, header.count) == (
        bloom.params.kind,
        bloom.params.key_id,
        bloom.params.m,
        bloom.params.k,
        bloom.count,
    )
    decoded = decode_bloom(data, bloom.params)
    assert np.array_equal(decoded.bits, bloom.bits)
    assert decoded.count == bloom.count
    assert decoded.params == bloom.params
    assert decoded.bits.flags.writeable
    view = decode_bloom(data, bloom.params, copy=False)  # what the hub checks
    assert np.array_equal(view.bits, bloom.bits)
    if not header.compressed:
        assert not view.bits.flags.writeable
        assert np.shares_memory(view.bits, np.frombuffer(data, dtype=np.uint8))
    assert decoded.bits.flags.writeable  # a private copy, not a view of ``data``


def test_decoded_filter_is_usable() -> None:
    decoded = decode_bloom(golden("bloom_v2_raw.bin"), GOLDEN_PARAMS)
    prf = KeyedPRF(GOLDEN_KEY)
    decoded.add_tokens(prf.tokens(["d@example.com"]))
    assert decoded.contains_tokens(prf.tokens([*GOLDEN_VALUES, "d@example.com"])).all()
    assert decoded.count == 4


@st.composite
def signature_sets(draw: st.DrawFn) -> SignatureSet:
    n = draw(st.integers(0, 6))
    p = draw(st.integers(1, 40))
    raw = draw(st.lists(st.integers(0, 2**32 - 1), min_size=n * p, max_size=n * p))
    return SignatureSet(
        key_id=draw(KEY_IDS),
        shingle_unit=draw(st.sampled_from(["word", "char"])),
        shingle_size=draw(st.integers(1, 255)),
        values=np.array(raw, dtype=np.uint32).reshape(n, p),
    )


@PROPERTY
@given(signature_sets())
def test_signature_round_trip(signatures: SignatureSet) -> None:
    decoded = decode_signatures(encode_signatures(signatures))
    assert decoded.key_id == signatures.key_id
    assert decoded.shingle_unit == signatures.shingle_unit
    assert decoded.shingle_size == signatures.shingle_size
    assert decoded.values.dtype == np.uint32
    assert decoded.values.shape == signatures.values.shape
    assert np.array_equal(decoded.values, signatures.values)


# ----------------------------------------------------------------------------- encoder refusals


def test_encode_refuses_kind_without_wire_code() -> None:
    params = BloomParams(kind="fax", key_id="golden-1", m=640, k=7, capacity=64, target_fpr=0.01)
    with pytest.raises(FormatError, match="wire code"):
        encode_bloom(BloomFilter(params))


@pytest.mark.parametrize("key_id", ["", "bad id", "a" * 33, "-x", "é"])
def test_encode_refuses_unencodable_key_id(key_id: str) -> None:
    # BloomParams itself refuses such key ids; force one in to test the encoder's own guard.
    params = BloomParams(kind="email", key_id="golden-1", m=640, k=7, capacity=64, target_fpr=0.01)
    object.__setattr__(params, "key_id", key_id)
    with pytest.raises(FormatError, match="key id"):
        encode_bloom(BloomFilter(params))
    with pytest.raises(FormatError, match="key id"):
        encode_signatures(SignatureSet(key_id, "word", 3, np.zeros((1, 4), dtype=np.uint32)))


@pytest.mark.parametrize(
    ("unit", "size", "values"),
    [
        ("line", 3, np.zeros((1, 4), dtype=np.uint32)),
        ("word", 0, np.zeros((1, 4), dtype=np.uint32)),
        ("word", 256, np.zeros((1, 4), dtype=np.uint32)),
        ("word", 3, np.zeros((1, 0), dtype=np.uint32)),
        ("word", 3, np.zeros(4, dtype=np.uint32)),
        ("word", 3, np.zeros((1, 2, 2), dtype=np.uint32)),
        ("word", 3, np.zeros((1, 65_536), dtype=np.uint32)),
    ],
)
def test_encode_refuses_bad_signature_sets(
    unit: str, size: int, values: npt.NDArray[np.uint32]
) -> None:
    with pytest.raises(FormatError):
        encode_signatures(SignatureSet("golden-1", unit, size, values))


# ----------------------------------------------------------------------------- malformed Bloom


@pytest.mark.parametrize("name", ["bloom_v2_raw.bin", "bloom_v2_zlib.bin"])
def test_every_truncation_refused(name: str) -> None:
    data = golden(name)
    for length in range(len(data)):
        expect_format_error(data[:length])
        if length < 40:
            with pytest.raises(FormatError):
                read_bloom_header(data[:length])


def test_header_field_refusals() -> None:
    raw = golden("bloom_v2_raw.bin")
    cases = {
        "bad magic": patched(raw, 0, "4s", b"SGBX"),
        "signature magic": patched(raw, 0, "4s", b"SGMH"),
        "version 0": patched(raw, 4, "<B", 0),
        "version 1": patched(raw, 4, "<B", 1),
        "version 3": patched(raw, 4, "<B", 3),
        "unknown flag bit 1": patched(raw, 6, "<H", 0x0002),
        "unknown flag bit 15": patched(raw, 6, "<H", 0x8000 | FLAG_ZLIB),
        "reserved": patched(raw, 26, "<H", 1),
        "reserved high": patched(raw, 26, "<H", 0x0100),
        "kind code 0": patched(raw, 5, "<B", 0),
        "kind code 200": patched(raw, 5, "<B", 200),
        "key length 0": patched(raw, 25, "<B", 0),
        "key length 33": patched(raw, 25, "<B", 33),
        "key length 255": patched(raw, 25, "<B", 255),
        "key id slash": raw[:32] + b"golden/1" + raw[40:],
        "key id space": raw[:32] + b"golden 1" + raw[40:],
        "key id non-ascii": raw[:32] + b"golden\xff1" + raw[40:],
        "key id leading dash": raw[:32] + b"-olden-1" + raw[40:],
        "key id NUL": raw[:32] + b"golden\x001" + raw[40:],
    }
    messages = {
        "bad magic": "bad magic",
        "signature magic": "bad magic",
        "version 0": "version 0",
        "version 1": "version 1 uses the old bit positions",
        "version 3": "version 3",
        "kind code 0": "unknown kind code 0",
        "kind code 200": "unknown kind code 200",
        "key length 0": "key id length",
        "key length 33": "key id length",
        "key id non-ascii": "not ASCII",
    }
    for label, data in cases.items():
        error = expect_format_error(data)
        assert messages.get(label, "") in str(error), label
        with pytest.raises(FormatError):
            read_bloom_header(data)


def test_key_id_length_pointing_past_the_end() -> None:
    # A header alone (no key id bytes) with L = 8.
    header_only = golden("bloom_v2_raw.bin")[:32]
    error = expect_format_error(header_only)
    assert "truncated" in str(error)


def test_zlib_flag_on_a_raw_payload_refused() -> None:
    raw = golden("bloom_v2_raw.bin")
    error = expect_format_error(patched(raw, 6, "<H", FLAG_ZLIB))
    assert "corrupt compressed payload" in str(error)


def test_raw_flag_on_a_compressed_payload_refused() -> None:
    packed = golden("bloom_v2_zlib.bin")
    error = expect_format_error(patched(packed, 6, "<H", 0))
    assert "payload is" in str(error)


def test_crc_flip_refused() -> None:
    for name in ("bloom_v2_raw.bin", "bloom_v2_zlib.bin"):
        data = bytearray(golden(name))
        for bit in range(32):
            flipped = bytearray(data)
            flipped[28 + bit // 8] ^= 1 << (bit % 8)
            assert "checksum mismatch" in str(expect_format_error(bytes(flipped)))


def test_every_payload_bit_flip_refused() -> None:
    raw = golden("bloom_v2_raw.bin")
    for position in range(40, len(raw)):
        for bit in range(8):
            flipped = bytearray(raw)
            flipped[position] ^= 1 << bit
            assert "checksum mismatch" in str(expect_format_error(bytes(flipped)))


def test_every_compressed_payload_bit_flip_refused_or_harmless() -> None:
    # Deflate has don't-care bits (padding after the final block's end code): a flip there
    # inflates to the same bytes. Every other flip must be refused; none may change the bits.
    packed = golden("bloom_v2_zlib.bin")
    original = golden_bloom().bits
    refused = harmless = 0
    for position in range(40, len(packed)):
        for bit in range(8):
            flipped = bytearray(packed)
            flipped[position] ^= 1 << bit
            try:
                decoded = decode_bloom(bytes(flipped), GOLDEN_PARAMS)
            except FormatError:
                refused += 1
                continue
            assert np.array_equal(decoded.bits, original), (position, bit)
            harmless += 1
    assert refused > 0.9 * (refused + harmless)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kind": "phone"}, "kind"),
        ({"key_id": "golden-2"}, "key id"),
        ({"m": 704}, "filter m is 640, expected 704"),
        ({"k": 6}, "filter k is 7, expected 6"),
    ],
)
def test_params_mismatch_refused(change: dict[str, object], message: str) -> None:
    fields = {
        "kind": "email",
        "key_id": "golden-1",
        "m": 640,
        "k": 7,
        "capacity": 64,
        "target_fpr": 0.01,
    }
    params = BloomParams(**{**fields, **change})  # type: ignore[arg-type]
    for name in ("bloom_v2_raw.bin", "bloom_v2_zlib.bin"):
        assert message in str(expect_format_error(golden(name), params))


def test_capacity_and_target_are_not_part_of_the_encoding() -> None:
    other = BloomParams(kind="email", key_id="golden-1", m=640, k=7, capacity=1_000, target_fpr=0.3)
    assert decode_bloom(golden("bloom_v2_raw.bin"), other).params == other


@pytest.mark.parametrize("extra", [b"\x00", b"garbage", bytes(80)])
def test_raw_payload_of_wrong_length_refused(extra: bytes) -> None:
    raw = golden("bloom_v2_raw.bin")
    assert "payload is" in str(expect_format_error(raw + extra))
    assert "payload is" in str(expect_format_error(raw[:-1]))


def compressed_variant(payload: bytes, bits: bytes) -> bytes:
    """The golden header with the zlib flag, a chosen payload and the CRC of ``bits``."""
    header = patched(golden("bloom_v2_raw.bin")[:40], 6, "<H", FLAG_ZLIB)
    return with_crc(header, 28, bits) + payload


def test_trailing_garbage_after_zlib_stream_refused() -> None:
    bits = golden_bloom().bits.tobytes()
    for extra in (b"\x00", b"junk", zlib.compress(b"second stream")):
        data = compressed_variant(zlib.compress(bits) + extra, bits)
        assert "exactly m/8 bytes" in str(expect_format_error(data))


def test_truncated_zlib_stream_refused() -> None:
    bits = golden_bloom().bits.tobytes()
    stream = zlib.compress(bits)
    for cut in range(len(stream)):
        expect_format_error(compressed_variant(stream[:cut], bits))


def test_zlib_stream_of_wrong_length_refused() -> None:
    bits = golden_bloom().bits.tobytes()
    short = compressed_variant(zlib.compress(bits[:-1]), bits[:-1])
    assert "payload is 79 bytes" in str(expect_format_error(short))
    long = compressed_variant(zlib.compress(bits + b"\x00"), bits)
    assert "exactly m/8 bytes" in str(expect_format_error(long))


def test_zlib_with_gzip_or_raw_deflate_framing_refused() -> None:
    bits = golden_bloom().bits.tobytes()
    gzip_like = zlib.compressobj(6, zlib.DEFLATED, 31)
    raw_deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
    for compressor in (gzip_like, raw_deflate):
        stream = compressor.compress(bits) + compressor.flush()
        expect_format_error(compressed_variant(stream, bits))


def zlib_bomb(inflated: int) -> bytes:
    compressor = zlib.compressobj(9)
    chunk = bytes(1 << 20)
    parts = [compressor.compress(chunk) for _ in range(inflated >> 20)]
    return b"".join(parts) + compressor.flush()


def test_zlib_bomb_refused_with_bounded_memory() -> None:
    # 1 MiB filter (m = 2^23); a 64 MiB zero stream (≈ 64 KB compressed). The CRC is that of
    # the first m/8 zero bytes, so only the size cap can refuse it.
    params = BloomParams(
        kind="email", key_id="golden-1", m=1 << 23, k=7, capacity=1, target_fpr=0.5
    )
    nbytes = params.nbytes
    header = struct.pack(
        "<4sBBHQQBBHI",
        b"SGBF", 2, 1, FLAG_ZLIB, params.m, 0, 7, 8, 0, zlib.crc32(bytes(nbytes)),
    )  # fmt: skip
    data = header + b"golden-1" + zlib_bomb(64 << 20)
    assert len(data) < nbytes  # the bomb is smaller than the filter it claims to be
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        error = expect_format_error(data, params)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "exactly m/8 bytes" in str(error)
    # Decompression is capped at m/8 = 1 MiB of output; the zlib state and the unconsumed input
    # tail add < 1 MiB. Inflating the whole stream would allocate 64 MiB at least.
    assert peak < 4 * nbytes


# ----------------------------------------------------------------------------- malformed signatures


def test_every_signature_truncation_refused() -> None:
    data = golden("signatures_v1.bin")
    for length in range(len(data)):
        expect_signature_error(data[:length])


def test_signature_field_refusals() -> None:
    data = golden("signatures_v1.bin")
    payload = data[32:]
    cases = {
        "bad magic": (patched(data, 0, "4s", b"SGBF"), "bad magic"),
        "version 2": (patched(data, 4, "<B", 2), "version 2"),
        "unit 0": (patched(data, 5, "<B", 0), "shingle"),
        "unit 3": (patched(data, 5, "<B", 3), "shingle"),
        "size 0": (patched(data, 6, "<B", 0), "shingle"),
        "key length 0": (patched(data, 7, "<B", 0), "key id length"),
        "key length 33": (patched(data, 7, "<B", 33), "key id length"),
        "P 0": (patched(data, 8, "<H", 0), "permutation"),
        "P 7": (patched(data, 8, "<H", 7), "payload is"),
        "flags": (patched(data, 10, "<H", 1), "flags"),
        "N 4": (patched(data, 12, "<I", 4), "payload is"),
        "N huge": (patched(data, 12, "<I", 2**32 - 1), "payload is"),
        "crc": (patched(data, 16, "<I", zlib.crc32(payload) ^ 1), "checksum"),
        "reserved": (patched(data, 20, "<I", 1), "reserved"),
        "key id chars": (data[:24] + b"golden 1" + data[32:], "key id"),
        "key id non-ascii": (data[:24] + b"golden\x801" + data[32:], "not ASCII"),
        "extra byte": (data + b"\x00", "payload is"),
        "extra row": (data + bytes(32), "payload is"),
    }
    for label, (mutated, message) in cases.items():
        assert message in str(expect_signature_error(mutated)), label


def test_every_signature_payload_bit_flip_refused() -> None:
    data = golden("signatures_v1.bin")
    for position in range(32, len(data)):
        for bit in range(8):
            flipped = bytearray(data)
            flipped[position] ^= 1 << bit
            assert "checksum" in str(expect_signature_error(bytes(flipped)))


# ----------------------------------------------------------------------------- fuzzing


def decode_anything(data: bytes) -> None:
    """Run every decoder on ``data``: each must succeed or raise FormatError, nothing else."""
    for decoder in (
        lambda: decode_bloom(data, GOLDEN_PARAMS),
        lambda: read_bloom_header(data),
        lambda: decode_signatures(data),
    ):
        try:
            result = decoder()
        except FormatError:
            continue
        if isinstance(result, BloomFilter):
            assert result.bits.shape == (GOLDEN_PARAMS.nbytes,)
            assert result.params == GOLDEN_PARAMS


@PROPERTY
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(data: bytes) -> None:
    decode_anything(data)
    decode_anything(BLOOM_MAGIC + b"\x02" + data)
    decode_anything(BLOOM_MAGIC + b"\x01" + data)
    decode_anything(SIGNATURE_MAGIC + b"\x01" + data)


@PROPERTY
@given(
    name=st.sampled_from(["bloom_v2_raw.bin", "bloom_v2_zlib.bin", "signatures_v1.bin"]),
    edits=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=6),
    cut=st.one_of(st.none(), st.integers(0, 200)),
    tail=st.binary(max_size=20),
    fix_crc=st.booleans(),
)
def test_fuzz_mutated_encodings(
    name: str, edits: list[tuple[int, int]], cut: int | None, tail: bytes, fix_crc: bool
) -> None:
    data = bytearray(golden(name))
    for position, value in edits:
        if position < len(data):
            data[position] = value
    mutated = bytes(data[:cut] if cut is not None else data) + tail
    decode_anything(mutated)
    if fix_crc and name == "bloom_v2_raw.bin" and len(mutated) >= 40:
        # Recompute the CRC so mutations reach the checks behind it.
        decode_anything(with_crc(mutated, 28, mutated[40:]))
    if fix_crc and name == "signatures_v1.bin" and len(mutated) >= 32:
        decode_anything(with_crc(mutated, 16, mutated[32:]))


def test_flipped_header_bits_never_escape_as_other_errors() -> None:
    for name in ("bloom_v2_raw.bin", "bloom_v2_zlib.bin", "signatures_v1.bin"):
        data = golden(name)
        for position in range(min(len(data), 40)):
            for bit in range(8):
                flipped = bytearray(data)
                flipped[position] ^= 1 << bit
                decode_anything(bytes(flipped))


@pytest.mark.parametrize("name", ["bloom_v2_raw.bin", "bloom_v2_zlib.bin"])
def test_only_the_declared_count_escapes_header_integrity(name: str) -> None:
    # Every single-bit flip in the header and key id is refused, except in the declared count
    # (bytes 16..23): it is covered neither by the CRC (bits only) nor by the caller's params.
    # check_filter then judges the count against the fill.
    data = golden(name)
    accepted = set()
    for position in range(40):
        for bit in range(8):
            flipped = bytearray(data)
            flipped[position] ^= 1 << bit
            try:
                decoded = decode_bloom(bytes(flipped), GOLDEN_PARAMS)
            except FormatError:
                continue
            accepted.add(position)
            assert decoded.count == 3 ^ (1 << (8 * (position - 16) + bit))
    assert accepted == set(range(16, 24))
