"""Published HPKE test vectors: our key derivation and the library's decryption match them.

Two entries pinned in ``tests/golden/hpke/`` (see ``tests/golden/README.md``): the
draft-ietf-hpke-pq vector of the suite envelopes use (MLKEM768-X25519 / HKDF-SHA256 /
ChaCha20-Poly1305) and the RFC 9180 A.2.1 vector of the classical X25519 suite with the same KDF
and AEAD.

Every encryption in the vectors carries AAD ("Count-0", ...), which the public single-shot API
(``Suite.decrypt``) has no parameter for, so the decryptions go through the binding it wraps,
``_decrypt_with_aad``. A single-shot open is sequence number 0 of a fresh context, so only each
vector's first encryption (nonce = base_nonce) is reachable; the later ones use nonces
base_nonce XOR seq for seq ≥ 1 of one long-lived context, which single-shot HPKE never builds.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.bindings._rust import openssl as rust_openssl
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519

from sigshare.keyring.member_keys import (
    AEAD_ID,
    KDF_ID,
    KEM_ID,
    SEALING_PUBLIC_BYTES,
    SUITE,
    SealingKey,
)

GOLDEN_HPKE = Path(__file__).resolve().parent.parent / "golden" / "hpke"
HYBRID_FILE = "draft-ietf-hpke-pq-mlkem768x25519-hkdfsha256-chacha20poly1305.json"
X25519_FILE = "rfc9180-a2-1-x25519-hkdfsha256-chacha20poly1305.json"
X25519_SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)


def load_vector(name: str) -> dict[str, Any]:
    vector: dict[str, Any] = json.loads((GOLDEN_HPKE / name).read_text(encoding="utf-8"))
    return vector


def h(value: str) -> bytes:
    return bytes.fromhex(value)


def nonce_for_sequence(base_nonce: bytes, sequence: int) -> bytes:
    """RFC 9180 §5.2 ComputeNonce: base_nonce XOR the big-endian sequence number."""
    return (int.from_bytes(base_nonce, "big") ^ sequence).to_bytes(len(base_nonce), "big")


@pytest.mark.parametrize("name", [HYBRID_FILE, X25519_FILE])
def test_pinned_encryptions_are_sequence_numbers_0_1_2(name: str) -> None:
    vector = load_vector(name)
    assert vector["mode"] == 0
    assert (vector["kdf_id"], vector["aead_id"]) == (KDF_ID, AEAD_ID)
    nonces = [h(encryption["nonce"]) for encryption in vector["encryptions"]]
    assert nonces == [nonce_for_sequence(h(vector["base_nonce"]), seq) for seq in range(3)]


def test_hybrid_seed_expansion_reproduces_the_vector_public_key() -> None:
    vector = load_vector(HYBRID_FILE)
    assert vector["kem_id"] == KEM_ID == 0x647A
    # draft-ietf-hpke-pq: SHAKE256(seed) → 64 bytes of ML-KEM-768 seed (d || z), 32 of X25519.
    expanded = hashlib.shake_256(h(vector["skRm"])).digest(96)
    mlkem_key = mlkem.MLKEM768PrivateKey.from_seed_bytes(expanded[:64])
    x25519_key = x25519.X25519PrivateKey.from_private_bytes(expanded[64:])
    public = mlkem_key.public_key().public_bytes_raw() + x25519_key.public_key().public_bytes_raw()
    assert len(public) == SEALING_PUBLIC_BYTES == 1216
    assert public == h(vector["pkRm"])


def test_our_sealing_key_is_the_vector_key_pair() -> None:
    vector = load_vector(HYBRID_FILE)
    assert SealingKey(seed=h(vector["skRm"])).public_bytes() == h(vector["pkRm"])


def test_hybrid_vector_first_encryption_decrypts_with_our_private_key() -> None:
    vector = load_vector(HYBRID_FILE)
    first = vector["encryptions"][0]
    assert h(first["nonce"]) == h(vector["base_nonce"])  # sequence number 0
    assert len(h(vector["enc"])) == hpke.KEM.MLKEM768_X25519.enc_length() == 1120
    plaintext = rust_openssl.hpke._decrypt_with_aad(
        SUITE,
        h(vector["enc"]) + h(first["ct"]),
        SealingKey(seed=h(vector["skRm"])).private_key(),
        info=h(vector["info"]),
        aad=h(first["aad"]),
    )
    assert plaintext == h(first["pt"])


def test_x25519_vector_keys_and_first_encryption() -> None:
    vector = load_vector(X25519_FILE)
    assert vector["kem_id"] == 0x0020
    recipient = x25519.X25519PrivateKey.from_private_bytes(h(vector["skRm"]))
    assert recipient.public_key().public_bytes_raw() == h(vector["pkRm"])
    ephemeral = x25519.X25519PrivateKey.from_private_bytes(h(vector["skEm"]))
    assert ephemeral.public_key().public_bytes_raw() == h(vector["pkEm"]) == h(vector["enc"])
    first = vector["encryptions"][0]
    assert h(first["nonce"]) == h(vector["base_nonce"])  # sequence number 0
    plaintext = rust_openssl.hpke._decrypt_with_aad(
        X25519_SUITE,
        h(vector["enc"]) + h(first["ct"]),
        recipient,
        info=h(vector["info"]),
        aad=h(first["aad"]),
    )
    assert plaintext == h(first["pt"]) == b"Beauty is truth, truth beauty"


def suite_and_key(
    name: str,
) -> tuple[hpke.Suite, hpke.MLKEM768X25519PrivateKey | x25519.X25519PrivateKey]:
    seed = h(load_vector(name)["skRm"])
    if name == HYBRID_FILE:
        return SUITE, SealingKey(seed=seed).private_key()
    return X25519_SUITE, x25519.X25519PrivateKey.from_private_bytes(seed)


@pytest.mark.parametrize("name", [HYBRID_FILE, X25519_FILE])
def test_single_shot_open_is_sequence_number_0_only(name: str) -> None:
    # Why only encryptions[0] is checked: the second encryption (seq 1) is a valid ciphertext
    # of the same context, yet a single-shot open (the seq 0 nonce) must reject it.
    vector = load_vector(name)
    suite, key = suite_and_key(name)
    second = vector["encryptions"][1]
    with pytest.raises(InvalidTag):
        rust_openssl.hpke._decrypt_with_aad(
            suite,
            h(vector["enc"]) + h(second["ct"]),
            key,
            info=h(vector["info"]),
            aad=h(second["aad"]),
        )


def test_vector_decryption_fails_without_the_vector_aad() -> None:
    # The vectors' AAD is really bound: the public API (no AAD) cannot open them.
    vector = load_vector(HYBRID_FILE)
    first = vector["encryptions"][0]
    with pytest.raises(InvalidTag):
        SUITE.decrypt(
            h(vector["enc"]) + h(first["ct"]),
            SealingKey(seed=h(vector["skRm"])).private_key(),
            info=h(vector["info"]),
        )
