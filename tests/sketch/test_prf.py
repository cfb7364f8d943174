"""Keyed PRF: pinned tokens, an independent reference, batching, chunking and key separation."""

from __future__ import annotations

import math

import mmh3
import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

import sigshare.sketch.prf as prf_module
from sigshare.sketch.bloom import BloomParams, KeyedBloomFilter, and_popcount
from sigshare.sketch.prf import TOKEN_BYTES, KeyedPRF, tokens_from_bytes, tokens_to_bytes

KEY = bytes(range(32))
OTHER_KEY = bytes(range(32, 64))
PROPERTY = settings(derandomize=True, deadline=None, max_examples=100)
MASK64 = (1 << 64) - 1

# Golden tokens under KEY. Generated once with the current code and checked below against an
# independent reference; changing them changes every sketch: a PRF version bump, not a fix.
PINNED_TOKENS = {
    "a@example.com": "960121901023fedf523ba3b0e24ac533",
    "": "f29000b62a499fd0a9f39a6add2e7780",
    "Zoë 🙂": "6a1551288a47333ffda31579c54a1c42",
}


# ----------------------------------------------------------------------------- references


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & MASK64


def _fmix(k: int) -> int:
    k ^= k >> 33
    k = (k * 0xFF51AFD7ED558CCD) & MASK64
    k ^= k >> 33
    k = (k * 0xC4CEB9FE1A85EC53) & MASK64
    k ^= k >> 33
    return k


def murmur3_x64_128(data: bytes, seed: int = 0) -> bytes:
    """MurmurHash3_x64_128 written out from the reference C (little-endian h1 ‖ h2)."""
    c1, c2 = 0x87C37B91114253D5, 0x4CF5AD432745937F
    h1 = h2 = seed
    blocks = len(data) // 16
    for i in range(blocks):
        k1 = int.from_bytes(data[16 * i : 16 * i + 8], "little")
        k2 = int.from_bytes(data[16 * i + 8 : 16 * i + 16], "little")
        h1 ^= (_rotl((k1 * c1) & MASK64, 31) * c2) & MASK64
        h1 = (((_rotl(h1, 27) + h2) & MASK64) * 5 + 0x52DCE729) & MASK64
        h2 ^= (_rotl((k2 * c2) & MASK64, 33) * c1) & MASK64
        h2 = (((_rotl(h2, 31) + h1) & MASK64) * 5 + 0x38495AB5) & MASK64
    tail = data[16 * blocks :]
    if len(tail) > 8:
        h2 ^= (_rotl((int.from_bytes(tail[8:], "little") * c2) & MASK64, 33) * c1) & MASK64
    if tail:
        h1 ^= (_rotl((int.from_bytes(tail[:8], "little") * c1) & MASK64, 31) * c2) & MASK64
    h1 ^= len(data)
    h2 ^= len(data)
    h1 = (h1 + h2) & MASK64
    h2 = (h2 + h1) & MASK64
    h1, h2 = _fmix(h1), _fmix(h2)
    h1 = (h1 + h2) & MASK64
    h2 = (h2 + h1) & MASK64
    return h1.to_bytes(8, "little") + h2.to_bytes(8, "little")


def aes_ecb(key: bytes, blocks: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return encryptor.update(blocks) + encryptor.finalize()


def reference_token(key: bytes, value: str | bytes) -> bytes:
    data = value.encode("utf-8") if isinstance(value, str) else value
    return aes_ecb(key, mmh3.hash_bytes(data))


def values(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}@example.com" for i in range(n)]


# ----------------------------------------------------------------------------- pinned values


def test_aes_matches_fips197_vector() -> None:
    # FIPS-197 appendix C.3 (AES-256): the key is 00..1f, exactly KEY.
    block = np.frombuffer(bytes.fromhex("00112233445566778899aabbccddeeff"), dtype=np.uint8)
    out = KeyedPRF(KEY).encrypt_blocks(block.reshape(1, 16))
    assert tokens_to_bytes(out)[0].hex() == "8ea2b7ca516745bfeafc49904b496089"


def test_murmur_reference_known_vectors() -> None:
    assert murmur3_x64_128(b"") == bytes(16)  # seed 0, empty input: every lane stays 0
    assert murmur3_x64_128(b"hello") == mmh3.hash_bytes(b"hello")


@PROPERTY
@given(st.binary(max_size=70))
def test_murmur_reference_equals_mmh3(data: bytes) -> None:
    assert murmur3_x64_128(data) == mmh3.hash_bytes(data)


@pytest.mark.parametrize("value", list(PINNED_TOKENS))
def test_pinned_tokens(value: str) -> None:
    prf = KeyedPRF(KEY)
    expected = PINNED_TOKENS[value]
    assert prf.token_bytes(value).hex() == expected
    assert len(prf.token_bytes(value)) == TOKEN_BYTES == 16
    assert tokens_to_bytes(prf.tokens([value]))[0].hex() == expected
    # Independent of mmh3 and of the PRF class: pure-Python MurmurHash3 + cryptography AES.
    assert aes_ecb(KEY, murmur3_x64_128(value.encode("utf-8"))).hex() == expected
    assert reference_token(KEY, value).hex() == expected


def test_token_array_layout_is_little_endian_halves() -> None:
    prf = KeyedPRF(KEY)
    tokens = prf.tokens(list(PINNED_TOKENS))
    assert tokens.dtype == np.dtype("<u8")
    assert tokens.shape == (3, 2)
    for row, value in zip(tokens, PINNED_TOKENS, strict=True):
        raw = bytes.fromhex(PINNED_TOKENS[value])
        assert int(row[0]) == int.from_bytes(raw[:8], "little")
        assert int(row[1]) == int.from_bytes(raw[8:], "little")


# ----------------------------------------------------------------------------- properties


@PROPERTY
@given(st.lists(st.one_of(st.text(max_size=40), st.binary(max_size=40)), max_size=30))
def test_batch_equals_reference_and_per_item(items: list[str | bytes]) -> None:
    prf = KeyedPRF(KEY)
    batch = tokens_to_bytes(prf.tokens(items))
    assert batch == [prf.token_bytes(item) for item in items]
    assert batch == [reference_token(KEY, item) for item in items]


@PROPERTY
@given(st.text(max_size=60))
def test_text_and_its_utf8_bytes_give_the_same_token(text: str) -> None:
    prf = KeyedPRF(KEY)
    assert prf.token_bytes(text) == prf.token_bytes(text.encode("utf-8"))
    assert np.array_equal(prf.tokens([text]), prf.tokens([text.encode("utf-8")]))


def test_iterables_and_sequences_agree() -> None:
    prf = KeyedPRF(KEY)
    items = values("it", 100)
    assert np.array_equal(prf.tokens(iter(items)), prf.tokens(items))
    assert np.array_equal(prf.tokens(tuple(items)), prf.tokens(items))
    assert np.array_equal(prf.tokens(item for item in items), prf.tokens(items))


def test_empty_batch() -> None:
    out = KeyedPRF(KEY).tokens([])
    assert out.shape == (0, 2)
    assert out.dtype == np.dtype("<u8")
    assert tokens_to_bytes(out) == []
    assert tokens_from_bytes([]).shape == (0, 2)


@pytest.mark.parametrize("chunk", [1, 2, 7, 64, 100, 101])
def test_chunked_tokens_equal_unchunked(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    prf = KeyedPRF(KEY)
    items = values("chunk", 100)  # 100 = 14·7 + 2: chunk 7 ends on a partial chunk
    blocks = np.frombuffer(b"".join(mmh3.hash_bytes(v) for v in items), dtype=np.uint8)
    whole = prf.tokens(items)
    whole_blocks = prf.encrypt_blocks(blocks.reshape(-1, 16))
    assert np.array_equal(whole, whole_blocks)  # the pre-hash is exactly mmh3.hash_bytes
    monkeypatch.setattr(prf_module, "_CHUNK", chunk)
    assert np.array_equal(prf.tokens(items), whole)
    assert np.array_equal(prf.tokens(iter(items)), whole)
    assert np.array_equal(prf.encrypt_blocks(blocks.reshape(-1, 16)), whole)


def test_encrypt_blocks_accepts_non_contiguous_input() -> None:
    prf = KeyedPRF(KEY)
    wide = np.arange(40 * 32, dtype=np.uint32).astype(np.uint8).reshape(40, 32)
    view = wide[:, ::2]  # (40, 16), not contiguous
    assert not view.flags.c_contiguous
    expected = aes_ecb(KEY, np.ascontiguousarray(view).tobytes())
    assert b"".join(tokens_to_bytes(prf.encrypt_blocks(view))) == expected


@PROPERTY
@given(st.lists(st.binary(min_size=16, max_size=16), max_size=20))
def test_tokens_bytes_round_trip(raw: list[bytes]) -> None:
    array = tokens_from_bytes(raw)
    assert array.shape == (len(raw), 2)
    assert tokens_to_bytes(array) == raw
    assert array.flags.writeable


@pytest.mark.parametrize("length", [0, 15, 17, 32])
def test_tokens_from_bytes_refuses_wrong_length(length: int) -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        tokens_from_bytes([bytes(16), bytes(length)])


@pytest.mark.parametrize("length", [0, 16, 24, 31, 33, 64])
def test_key_must_be_32_bytes(length: int) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        KeyedPRF(bytes(length))


@pytest.mark.parametrize("shape", [(3,), (3, 15), (3, 17), (2, 16, 1)])
def test_encrypt_blocks_refuses_wrong_shape(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"\(n, 16\)"):
        KeyedPRF(KEY).encrypt_blocks(np.zeros(shape, dtype=np.uint8))


def test_repr_hides_key() -> None:
    prf = KeyedPRF(KEY)
    assert repr(prf) == "KeyedPRF(<key hidden>)"
    assert KEY.hex() not in repr(prf)
    assert not hasattr(prf, "__dict__")  # slots only: no stray attribute can hold the key


# ----------------------------------------------------------------------------- key separation

N_VALUES = 10_000


def test_distinct_values_give_distinct_balanced_tokens() -> None:
    tokens = KeyedPRF(KEY).tokens(values("u", N_VALUES))
    assert len({bytes(row) for row in tokens}) == N_VALUES
    ones = int(np.unpackbits(tokens.view(np.uint8)).sum())
    n_bits = N_VALUES * 128
    # Random bits: ones ~ Binomial(n_bits, ½); 5σ band, σ = sqrt(n_bits/4).
    assert abs(ones - n_bits / 2) <= 5 * math.sqrt(n_bits / 4)


def test_different_keys_give_unrelated_tokens() -> None:
    items = values("u", N_VALUES)
    a = KeyedPRF(KEY).tokens(items)
    b = KeyedPRF(OTHER_KEY).tokens(items)
    n_bits = N_VALUES * 128
    equal = n_bits - int(np.unpackbits(np.bitwise_xor(a, b).view(np.uint8)).sum())
    # Under unrelated keys each bit agrees with probability ½ independently:
    # equal/n_bits = ½ ± 5·sqrt(¼/n_bits) (≈ ± 0.0022 for 1.28M bits).
    assert abs(equal / n_bits - 0.5) <= 5 * math.sqrt(0.25 / n_bits)
    assert not np.any(np.all(a == b, axis=1))
    # The same key reproduces exactly (the test above can fail).
    assert np.array_equal(a, KeyedPRF(bytes(KEY)).tokens(items))


def test_hub_cannot_reproduce_a_sketch_without_the_key() -> None:
    params = BloomParams.for_capacity("email", "forum-1", 20_000, 0.01)
    items = values("v", N_VALUES)
    prf_a, prf_b = KeyedPRF(KEY), KeyedPRF(OTHER_KEY)
    bloom_a, bloom_b = KeyedBloomFilter(params, prf_a), KeyedBloomFilter(params, prf_b)
    bloom_a.add(items)
    bloom_b.add(items)
    m = params.m
    fill_a, fill_b = bloom_a.fill(), bloom_b.fill()
    # Independent filters: a bit is set in both with probability q = fill_a·fill_b, so the AND
    # popcount is ≈ Binomial(m, q) (bits within a filter are negatively associated, which only
    # narrows it): |AND − q·m| ≤ 6·sqrt(m·q·(1 − q)).
    q = fill_a * fill_b
    both = and_popcount(bloom_a.bits, bloom_b.bits)
    assert abs(both - q * m) <= 6 * math.sqrt(m * q * (1 - q))
    # Same key, same values: identical filters, so this statistic does discriminate.
    twin = KeyedBloomFilter(params, KeyedPRF(bytes(KEY)))
    twin.add(items)
    assert and_popcount(bloom_a.bits, twin.bits) == bloom_a.set_bits()
    assert abs(bloom_a.set_bits() - q * m) > 6 * math.sqrt(m * q * (1 - q))
    # Querying B's filter with key-A tokens hits at the false-positive rate fill_b^k, not 100%:
    # hits ≈ Binomial(N, fill_b^k); 6σ band (plus one item for the tiny mean).
    fpr = params.fpr_at_fill(fill_b)
    hits = int(bloom_b.contains_tokens(prf_a.tokens(items)).sum())
    assert abs(hits - N_VALUES * fpr) <= 6 * math.sqrt(N_VALUES * fpr * (1 - fpr)) + 1
    assert hits < 0.01 * N_VALUES
    assert bool(bloom_b.contains(items).all())
