"""Incremental count vectors and resolution vectors against an exact per-bit oracle."""

from __future__ import annotations

import numpy as np
import pytest

from sigshare.sketch import aggregate
from sigshare.sketch.aggregate import empty_counts, replace_filter, resolution_for
from sigshare.sketch.errors import FormatError, ParameterError
from sigshare.sketch.resolution import choose_encoding, decode_resolution, encode_resolution

M = 8 * 3_000


def random_bits(seed: int, fill: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.packbits(rng.random(M) < fill, bitorder="little")


def oracle(filters: list[np.ndarray]) -> np.ndarray:
    return sum(np.unpackbits(b, bitorder="little").astype(np.int64) for b in filters)


@pytest.fixture(autouse=True)
def small_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    # Several slices per vector, and a last slice shorter than the others.
    monkeypatch.setattr(aggregate, "_SLICE_BYTES", 1_024)


def test_incremental_updates_equal_a_clean_recomputation() -> None:
    counts = empty_counts(M)
    active: dict[str, np.ndarray] = {}
    for step, (member, fill) in enumerate(
        [("a", 0.3), ("b", 0.5), ("c", 0.2), ("a", 0.6), ("b", 0.1), ("d", 0.4), ("c", 0.9)]
    ):
        new = random_bits(step, fill)
        replace_filter(counts, new, active.get(member))
        active[member] = new
        assert np.array_equal(counts, oracle(list(active.values())))
    replace_filter(counts, None, active.pop("d"))
    assert np.array_equal(counts, oracle(list(active.values())))


@pytest.mark.parametrize("quorum", [2, 3, 4])
def test_resolution_excludes_the_requester_and_applies_the_quorum(quorum: int) -> None:
    filters = [random_bits(seed, 0.5) for seed in range(5)]
    counts = empty_counts(M)
    for bits in filters:
        replace_filter(counts, bits, None)
    for index, own in enumerate(filters):
        others = oracle([b for i, b in enumerate(filters) if i != index])
        expected = np.where(others >= quorum - 1, others, 0)
        assert np.array_equal(resolution_for(counts, own, quorum), expected)


def test_refused_updates_change_nothing() -> None:
    counts = empty_counts(M)
    first = random_bits(1, 0.5)
    replace_filter(counts, first, None)
    before = counts.copy()
    with pytest.raises(ParameterError, match="bookkeeping"):
        replace_filter(counts, None, random_bits(2, 0.5))  # removing a filter never added
    assert np.array_equal(counts, before)
    with pytest.raises(ParameterError, match="not part of the count vector"):
        resolution_for(counts, random_bits(3, 0.5), 2)
    with pytest.raises(ParameterError):
        replace_filter(counts, np.zeros(10, dtype=np.uint8), None)


def test_counts_saturate_loudly_beyond_255_members() -> None:
    counts = np.full(M, 255, dtype=np.uint8)
    with pytest.raises(ParameterError):
        replace_filter(counts, np.full(M // 8, 0xFF, dtype=np.uint8), None)


def test_resolution_codec_round_trip_and_refusals() -> None:
    values = np.zeros(M, dtype=np.uint16)
    values[::7] = 3
    values[5] = 1_000  # saturates at 255
    encoded = encode_resolution(values)
    decoded = decode_resolution(encoded, M)
    assert decoded[5] == 255
    assert np.array_equal(decoded[::7], np.full(len(values[::7]), 3, dtype=np.uint8))
    assert len(encoded) < M // 10  # mostly zeros compress
    with pytest.raises(FormatError):
        decode_resolution(encoded, M - 1)
    with pytest.raises(FormatError):
        decode_resolution(encoded, M + 1)
    with pytest.raises(FormatError):
        decode_resolution(encoded[:-3], M)
    with pytest.raises(FormatError):
        decode_resolution(b"not zlib", M)


def test_sparse_vectors_are_compressed_and_dense_ones_sent_raw() -> None:
    rng = np.random.default_rng(3)
    sparse = np.zeros(1 << 22, dtype=np.uint8)
    sparse[rng.integers(0, sparse.size, size=1000)] = 2
    dense = rng.binomial(19, 0.5, size=1 << 22).astype(np.uint8)  # 20 members at half fill
    assert choose_encoding(sparse) == "u8-zlib"
    assert choose_encoding(dense) == "u8"
    for values in (sparse, dense):
        encoding = choose_encoding(values)
        encoded = encode_resolution(values, encoding)
        assert np.array_equal(decode_resolution(encoded, values.size, encoding), values)
    assert len(encode_resolution(dense, "u8")) == dense.size


def test_raw_resolution_must_be_exactly_m_bytes_and_encodings_are_named() -> None:
    raw = encode_resolution(np.arange(M, dtype=np.uint16), "u8")
    assert decode_resolution(raw, M, "u8")[300] == 255  # saturated
    with pytest.raises(FormatError, match="expected"):
        decode_resolution(raw[:-1], M, "u8")
    with pytest.raises(FormatError, match="unknown resolution encoding"):
        decode_resolution(raw, M, "u4-lz4")
    with pytest.raises(FormatError, match="unknown resolution encoding"):
        encode_resolution(np.zeros(M, dtype=np.uint8), "u4-lz4")
