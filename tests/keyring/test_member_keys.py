"""Member keys: the key file and its permissions, fingerprints, registration proofs, reprs."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import stat
import struct
import tomllib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from sigshare.keyring.errors import MemberKeyFileError, RegistrationError
from sigshare.keyring.member_keys import (
    MEMBER_KEYS_FILE,
    SEALING_PUBLIC_BYTES,
    SIGNING_PUBLIC_BYTES,
    SUITE,
    MemberKeys,
    SealingKey,
    SigningKey,
    encode_member_name,
    load_member_keys,
    registration_fingerprint,
    registration_message,
    registration_proof,
    sealing_public_key,
    signing_fingerprint,
    verify_registration_proof,
    verify_signature,
    write_member_keys,
)

SEALING_SEED = bytes(range(32))
SIGNING_SEED = bytes(range(32, 64))
KEYS = MemberKeys(SealingKey(SEALING_SEED), SigningKey(SIGNING_SEED))
OTHER_KEYS = MemberKeys(SealingKey(bytes(range(1, 33))), SigningKey(bytes(range(33, 65))))

# Pinned for SEALING_SEED / SIGNING_SEED, checked below against an independent computation too.
# A change means every registered member's fingerprint changes: a format version bump.
PINNED_REGISTRATION_FINGERPRINT = "SHA256:p5xRwyElMfdMqpsv47G9rA9e1m+udr/jVBTwqcgX/PQ"
PINNED_SIGNING_FINGERPRINT = "SHA256:UKZmjSmc4oA0lXXCojThEBnQryzv9kB5ZJcMGm0IySs"
# Ed25519 is deterministic: this pins the registration message encoding of "alpha-bank".
PINNED_PROOF = (
    "a8ee1ff58026d0d477d50492c6207b3d1fd7bced00ec267e1f7dcf77a55afb88"
    "56d9773e9640f24a2cff12c5b695960753e9107538fd165fe4933d3e83f72c09"
)
FINGERPRINT_PATTERN = re.compile(r"SHA256:[A-Za-z0-9+/]{43}")


def fingerprint_reference(data: bytes) -> str:
    """``SHA256:`` + unpadded standard base64 of SHA-256, spelled out independently."""
    encoded = base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert (len(encoded), encoded.count("="), encoded[-1]) == (44, 1, "=")
    return "SHA256:" + encoded[:-1]


def secret_spellings(secret: bytes) -> list[str]:
    return [
        secret.hex(),
        secret.hex().upper(),
        base64.b64encode(secret).decode(),
        base64.urlsafe_b64encode(secret).decode(),
        repr(secret),
        str(list(secret)),
    ]


# ----------------------------------------------------------------------------- fingerprints


def test_fingerprints_of_fixed_seeds_are_pinned() -> None:
    assert KEYS.fingerprint == PINNED_REGISTRATION_FINGERPRINT
    assert KEYS.signing_fingerprint == PINNED_SIGNING_FINGERPRINT
    assert signing_fingerprint(KEYS.signing_public) == PINNED_SIGNING_FINGERPRINT
    assert (
        registration_fingerprint(KEYS.sealing_public, KEYS.signing_public)
        == PINNED_REGISTRATION_FINGERPRINT
    )


def test_fingerprints_match_the_documented_encoding() -> None:
    sealing, signing = KEYS.sealing_public, KEYS.signing_public
    assert len(sealing) == SEALING_PUBLIC_BYTES == 1216
    assert len(signing) == SIGNING_PUBLIC_BYTES == 32
    assert signing_fingerprint(signing) == fingerprint_reference(
        b"sigshare/v1/signing-key\x00" + signing
    )
    assert KEYS.fingerprint == fingerprint_reference(
        b"sigshare/v1/member-keys\x00"
        + struct.pack(">H", 1216)
        + sealing
        + struct.pack(">H", 32)
        + signing
    )
    assert FINGERPRINT_PATTERN.fullmatch(KEYS.fingerprint)
    assert FINGERPRINT_PATTERN.fullmatch(KEYS.signing_fingerprint)


def test_signing_public_key_is_the_ed25519_key_of_the_seed() -> None:
    expected = ed25519.Ed25519PrivateKey.from_private_bytes(SIGNING_SEED).public_key()
    assert KEYS.signing_public == expected.public_bytes_raw()


def test_fingerprints_differ_per_key() -> None:
    new_sealing = MemberKeys(OTHER_KEYS.sealing, KEYS.signing)
    new_signing = MemberKeys(KEYS.sealing, OTHER_KEYS.signing)
    registrations = {keys.fingerprint for keys in (KEYS, OTHER_KEYS, new_sealing, new_signing)}
    assert len(registrations) == 4
    # The signing fingerprint follows the signing key only.
    assert new_sealing.signing_fingerprint == KEYS.signing_fingerprint
    assert new_signing.signing_fingerprint == OTHER_KEYS.signing_fingerprint
    assert KEYS.signing_fingerprint != OTHER_KEYS.signing_fingerprint
    # Domain separation: the two kinds of fingerprint never coincide.
    assert KEYS.fingerprint != KEYS.signing_fingerprint


def test_generated_keys_are_fresh() -> None:
    first, second = MemberKeys.generate(), MemberKeys.generate()
    assert first.sealing.seed != second.sealing.seed
    assert first.signing.seed != second.signing.seed
    assert first.fingerprint != second.fingerprint


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_fingerprints_refuse_wrong_key_lengths(size: int) -> None:
    with pytest.raises(RegistrationError, match="signing public key is 32 bytes"):
        signing_fingerprint(bytes(size))
    with pytest.raises(RegistrationError, match="sealing public key is 1216 bytes"):
        registration_fingerprint(bytes(size), KEYS.signing_public)


@pytest.mark.parametrize("size", [0, 31, 33])
def test_seeds_must_be_32_bytes(size: int) -> None:
    with pytest.raises(ValueError, match="sealing key seed must be 32 bytes"):
        SealingKey(bytes(size))
    with pytest.raises(ValueError, match="signing key seed must be 32 bytes"):
        SigningKey(bytes(size))


# ----------------------------------------------------------------------------- public keys


def test_sealing_public_key_parses_and_seals_to_its_private_key() -> None:
    public = sealing_public_key(KEYS.sealing_public)
    sealed = SUITE.encrypt(b"hello", public, info=b"ctx")
    assert SUITE.decrypt(sealed, KEYS.sealing.private_key(), info=b"ctx") == b"hello"


@pytest.mark.parametrize("size", [0, 32, 1184, 1215, 1217])
def test_sealing_public_key_refuses_wrong_lengths(size: int) -> None:
    with pytest.raises(RegistrationError, match=f"1216 bytes .*got {size}"):
        sealing_public_key(bytes(size))


def test_sealing_public_key_refuses_an_invalid_mlkem_key() -> None:
    # ML-KEM-768 coefficients are < 3329; all 0xFF bytes encode 4095, which FIPS 203 refuses.
    raw = b"\xff" * 1184 + KEYS.sealing_public[1184:]
    with pytest.raises(RegistrationError, match="not a valid ML-KEM-768 \\+ X25519 key"):
        sealing_public_key(raw)


def test_verify_signature() -> None:
    signature = KEYS.signing.sign(b"message")
    assert len(signature) == 64
    assert verify_signature(KEYS.signing_public, signature, b"message")
    assert not verify_signature(KEYS.signing_public, signature, b"messagE")
    assert not verify_signature(OTHER_KEYS.signing_public, signature, b"message")
    assert not verify_signature(KEYS.signing_public, signature[:-1], b"message")
    with pytest.raises(RegistrationError, match="32 bytes"):
        verify_signature(KEYS.signing_public[:-1], signature, b"message")


# ----------------------------------------------------------------------------- registration


def test_registration_message_layout_and_pinned_proof() -> None:
    message = registration_message("alpha-bank", KEYS.sealing_public, KEYS.signing_public)
    assert message == (
        b"sigshare/v1/key-registration\x00"
        + b"\x00\x0aalpha-bank"
        + b"\x04\xc0"
        + KEYS.sealing_public
        + b"\x00\x20"
        + KEYS.signing_public
    )
    proof = registration_proof("alpha-bank", KEYS)
    assert proof.hex() == PINNED_PROOF
    assert verify_registration_proof("alpha-bank", KEYS.sealing_public, KEYS.signing_public, proof)


def test_registration_proof_fails_for_another_name_or_key() -> None:
    proof = registration_proof("alpha-bank", KEYS)
    sealing, signing = KEYS.sealing_public, KEYS.signing_public
    assert not verify_registration_proof("beta-bank", sealing, signing, proof)
    assert not verify_registration_proof("alpha-bank ", sealing, signing, proof)
    assert not verify_registration_proof("alpha-bank", OTHER_KEYS.sealing_public, signing, proof)
    # Someone registering KEYS' sealing key under a signing key they hold cannot reuse the proof,
    # and a proof made with another signing key does not vouch for KEYS' signing key.
    assert not verify_registration_proof("alpha-bank", sealing, OTHER_KEYS.signing_public, proof)
    stolen = MemberKeys(KEYS.sealing, OTHER_KEYS.signing)
    forged = OTHER_KEYS.signing.sign(registration_message("alpha-bank", sealing, signing))
    assert not verify_registration_proof("alpha-bank", sealing, signing, forged)
    assert verify_registration_proof(
        "alpha-bank", sealing, OTHER_KEYS.signing_public, registration_proof("alpha-bank", stolen)
    )
    tampered = bytes([proof[0] ^ 1]) + proof[1:]
    assert not verify_registration_proof("alpha-bank", sealing, signing, tampered)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "non-empty"),
        ("line\nbreak", "control or invisible"),
        ("tab\there", "control or invisible"),
        ("zero\u200bwidth", "control or invisible"),
        ("x" * 201, "201 bytes"),
        ("é" * 101, "202 bytes"),
    ],
)
def test_unusable_names_are_refused(name: str, message: str) -> None:
    with pytest.raises(RegistrationError, match=message):
        encode_member_name(name)
    with pytest.raises(RegistrationError, match=message):
        registration_message(name, KEYS.sealing_public, KEYS.signing_public)


def test_longest_and_non_ascii_names_are_accepted() -> None:
    assert encode_member_name("x" * 200) == b"x" * 200
    assert encode_member_name("Bänk & Co") == "Bänk & Co".encode()


# ----------------------------------------------------------------------------- the key file


def test_round_trip_through_the_key_file(tmp_path: Path) -> None:
    directory = tmp_path / "state" / "keys"
    path = write_member_keys(directory, KEYS)
    assert path == directory / MEMBER_KEYS_FILE == directory / "member.keys"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    loaded = load_member_keys(directory)
    assert loaded == KEYS
    assert loaded.fingerprint == PINNED_REGISTRATION_FINGERPRINT
    document = tomllib.loads(path.read_text(encoding="utf-8"))
    assert document["version"] == 1
    assert base64.b64decode(document["sealing_seed"]) == SEALING_SEED
    assert base64.b64decode(document["signing_seed"]) == SIGNING_SEED
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", document["created"])
    assert f"# registration fingerprint: {PINNED_REGISTRATION_FINGERPRINT}\n" in path.read_text()
    assert sorted(os.listdir(directory)) == ["member.keys"]  # no temporary file left behind


def test_existing_directory_permissions_are_kept(tmp_path: Path) -> None:
    tmp_path.chmod(0o750)
    write_member_keys(tmp_path, KEYS)
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o750
    assert stat.S_IMODE((tmp_path / "member.keys").stat().st_mode) == 0o600


def test_file_is_0600_even_under_a_permissive_umask(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        path = write_member_keys(tmp_path / "keys", KEYS)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_existing_keys_are_not_replaced_without_overwrite(tmp_path: Path) -> None:
    write_member_keys(tmp_path, KEYS)
    with pytest.raises(MemberKeyFileError) as refused:
        write_member_keys(tmp_path, OTHER_KEYS)
    message = str(refused.value)
    assert message.startswith(f"{tmp_path / 'member.keys'}: member keys already exist")
    assert "could no longer be opened" in message
    assert "admin must approve the new ones" in message
    assert load_member_keys(tmp_path) == KEYS
    write_member_keys(tmp_path, OTHER_KEYS, overwrite=True)
    assert load_member_keys(tmp_path) == OTHER_KEYS
    assert stat.S_IMODE((tmp_path / "member.keys").stat().st_mode) == 0o600
    assert sorted(os.listdir(tmp_path)) == ["member.keys"]


def test_key_directory_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "keys").write_text("not a directory")
    with pytest.raises(MemberKeyFileError, match="cannot create the key directory"):
        write_member_keys(tmp_path / "keys", KEYS)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o602])
def test_file_others_can_read_or_write_is_refused(tmp_path: Path, mode: int) -> None:
    path = write_member_keys(tmp_path, KEYS)
    path.chmod(mode)
    with pytest.raises(MemberKeyFileError) as refused:
        load_member_keys(tmp_path)
    assert str(refused.value) == (
        f"{path}: permissions {stat.filemode(stat.S_IFREG | mode)} let others read or change "
        f"the member's private keys; run: chmod 600 {path}"
    )


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MemberKeyFileError, match="no member keys here; generate"):
        load_member_keys(tmp_path)


def test_directory_in_place_of_the_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "member.keys").mkdir(mode=0o700)
    with pytest.raises(MemberKeyFileError, match="is a directory"):
        load_member_keys(tmp_path)


def test_fifo_in_place_of_the_file_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "member.keys", 0o600)
    with pytest.raises(MemberKeyFileError, match="not a regular file"):
        load_member_keys(tmp_path)


def write_raw(directory: Path, body: str) -> Path:
    path = directory / "member.keys"
    path.write_text(body, encoding="utf-8")
    path.chmod(0o600)
    return path


def key_file_body(
    *, version: str = "1", sealing: str | None = None, signing: str | None = None
) -> str:
    sealing = base64.b64encode(SEALING_SEED).decode() if sealing is None else sealing
    signing = base64.b64encode(SIGNING_SEED).decode() if signing is None else signing
    return f'version = {version}\nsealing_seed = "{sealing}"\nsigning_seed = "{signing}"\n'


def test_hand_written_file_loads(tmp_path: Path) -> None:
    write_raw(tmp_path, key_file_body())
    assert load_member_keys(tmp_path) == KEYS


@pytest.mark.parametrize("version", ["2", "0", '"1"', "1.0", "true"])
def test_wrong_version_is_refused(tmp_path: Path, version: str) -> None:
    write_raw(tmp_path, key_file_body(version=version))
    with pytest.raises(MemberKeyFileError, match="unsupported member key file version"):
        load_member_keys(tmp_path)


def test_truncated_base64_is_refused(tmp_path: Path) -> None:
    encoded = base64.b64encode(SEALING_SEED).decode()
    write_raw(tmp_path, key_file_body(sealing=encoded[:-3]))
    with pytest.raises(MemberKeyFileError, match="'sealing_seed' is not valid base64"):
        load_member_keys(tmp_path)


def test_seed_of_wrong_length_is_refused(tmp_path: Path) -> None:
    # Valid base64 of 30 bytes: cut at a 4-character boundary.
    encoded = base64.b64encode(SIGNING_SEED).decode()
    write_raw(tmp_path, key_file_body(signing=encoded[:40]))
    with pytest.raises(MemberKeyFileError, match="'signing_seed' must hold 32 bytes, got 30"):
        load_member_keys(tmp_path)


def test_missing_field_is_refused(tmp_path: Path) -> None:
    write_raw(tmp_path, key_file_body().replace("signing_seed", "signing"))
    with pytest.raises(MemberKeyFileError, match="needs a string field 'signing_seed'"):
        load_member_keys(tmp_path)


@pytest.mark.parametrize("body", ["version = \n", "not toml at all", "\udcff"])
def test_non_toml_is_refused(tmp_path: Path, body: str) -> None:
    path = tmp_path / "member.keys"
    path.write_bytes(body.encode("utf-8", "surrogateescape"))
    path.chmod(0o600)
    with pytest.raises(MemberKeyFileError, match="not a sigshare member key file"):
        load_member_keys(tmp_path)


def test_errors_never_show_seeds(tmp_path: Path) -> None:
    encoded = base64.b64encode(SEALING_SEED).decode()
    messages = []
    for body in (
        key_file_body(sealing=encoded[:-3]),
        key_file_body(sealing=encoded[:40]),
        key_file_body(version="9"),
        key_file_body() + "garbage",
    ):
        write_raw(tmp_path, body)
        with pytest.raises(MemberKeyFileError) as refused:
            load_member_keys(tmp_path)
        messages.append(str(refused.value))
    assert len(set(messages)) == 4
    for message in messages:
        for spelling in secret_spellings(SEALING_SEED) + secret_spellings(SIGNING_SEED):
            assert spelling not in message
        assert encoded[:12] not in message


def test_repr_and_str_never_show_seeds() -> None:
    shown = [
        repr(KEYS),
        str(KEYS),
        repr(KEYS.sealing),
        str(KEYS.sealing),
        repr(KEYS.signing),
        f"{KEYS.signing}",
        repr([KEYS]),
    ]
    assert repr(KEYS) == f"MemberKeys(fingerprint='{PINNED_REGISTRATION_FINGERPRINT}')"
    assert repr(KEYS.sealing) == "SealingKey(seed=<hidden>)"
    assert repr(KEYS.signing) == f"SigningKey(fingerprint='{PINNED_SIGNING_FINGERPRINT}')"
    # Distinctive seeds: no accidental substring of other text.
    sealing_seed = hashlib.sha256(b"sealing").digest()
    signing_seed = hashlib.sha256(b"signing").digest()
    keys = MemberKeys(SealingKey(sealing_seed), SigningKey(signing_seed))
    shown += [repr(keys), repr(keys.sealing), repr(keys.signing)]
    for text in shown:
        for seed in (SEALING_SEED, SIGNING_SEED, sealing_seed, signing_seed):
            for spelling in secret_spellings(seed):
                assert spelling not in text
