"""A member's key pairs, their file, their fingerprints and the proof that registers them.

Every member holds two private keys, each a 32-byte seed:

- a **sealing key** for HPKE (RFC 9180, base mode) with the hybrid post-quantum KEM
  MLKEM768-X25519 of draft-ietf-hpke-pq, HKDF-SHA256 and ChaCha20-Poly1305. Custodians seal the
  forum secret to its public half (1216 bytes: the ML-KEM-768 encapsulation key, then the X25519
  public key). The seed is expanded as the draft does: SHAKE256(seed) gives 96 bytes, the first 64
  seed ML-KEM-768, the last 32 are the X25519 private key.
- a **signing key** (Ed25519): a custodian signs the envelopes it seals, and every member signs
  its own key registration so the hub knows the registrant holds the key.

The public halves are registered with the hub and named by fingerprints (SHA-256 over a
domain-separated encoding, ``SHA256:`` + unpadded base64) that people compare out of band.

The private seeds live in ``member.keys``, a small TOML file that must be readable by its owner
only. Replacing it is deliberate: envelopes sealed to the old keys can no longer be opened.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import struct
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import ed25519, mlkem, x25519

from sigshare.keyring.errors import MemberKeyFileError, RegistrationError
from sigshare.sketch.private_files import (
    ExposedFileError,
    NotRegularFileError,
    read_private,
    write_private,
)

KEM_ID = 0x647A
"""HPKE KEM identifier of MLKEM768-X25519 (draft-ietf-hpke-pq)."""
KDF_ID = 1
"""HPKE KDF identifier of HKDF-SHA256."""
AEAD_ID = 3
"""HPKE AEAD identifier of ChaCha20-Poly1305."""
SUITE = hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
SUITE_NAME = "MLKEM768-X25519/HKDF-SHA256/ChaCha20-Poly1305"

SEED_BYTES = 32
MLKEM_PUBLIC_BYTES = 1184
X25519_PUBLIC_BYTES = 32
SEALING_PUBLIC_BYTES = MLKEM_PUBLIC_BYTES + X25519_PUBLIC_BYTES
SIGNING_PUBLIC_BYTES = 32
SIGNATURE_BYTES = 64
MAX_NAME_BYTES = 200
"""Longest member name (UTF-8 bytes) a registration or an envelope can carry."""

MEMBER_KEYS_FILE = "member.keys"
MEMBER_KEYS_VERSION = 1

_SIGNING_FINGERPRINT_DOMAIN = b"sigshare/v1/signing-key\x00"
_REGISTRATION_FINGERPRINT_DOMAIN = b"sigshare/v1/member-keys\x00"
_REGISTRATION_MESSAGE_DOMAIN = b"sigshare/v1/key-registration\x00"


def _check_seed(seed: bytes, what: str) -> None:
    if not isinstance(seed, bytes) or len(seed) != SEED_BYTES:
        size = len(seed) if isinstance(seed, bytes) else type(seed).__name__
        raise ValueError(f"{what} seed must be {SEED_BYTES} bytes, got {size}")


@dataclass(frozen=True, repr=False)
class SealingKey:
    """The private HPKE key of a member, kept as its 32-byte seed. ``repr`` never shows it."""

    seed: bytes = field(repr=False)

    def __post_init__(self) -> None:
        _check_seed(self.seed, "sealing key")

    def __repr__(self) -> str:
        return "SealingKey(seed=<hidden>)"

    @classmethod
    def generate(cls) -> SealingKey:
        return cls(seed=secrets.token_bytes(SEED_BYTES))

    def _components(self) -> tuple[mlkem.MLKEM768PrivateKey, x25519.X25519PrivateKey]:
        # draft-ietf-hpke-pq DeriveKeyPair for MLKEM768-X25519: SHAKE256 expands the seed.
        expanded = hashlib.shake_256(self.seed).digest(64 + 32)
        return (
            mlkem.MLKEM768PrivateKey.from_seed_bytes(expanded[:64]),
            x25519.X25519PrivateKey.from_private_bytes(expanded[64:]),
        )

    def private_key(self) -> hpke.MLKEM768X25519PrivateKey:
        """The HPKE private key object (rebuilt from the seed on each call)."""
        return hpke.MLKEM768X25519PrivateKey(*self._components())

    def public_bytes(self) -> bytes:
        """The 1216-byte public key: ML-KEM-768 encapsulation key, then X25519 public key."""
        mlkem_key, x25519_key = self._components()
        return (
            mlkem_key.public_key().public_bytes_raw() + x25519_key.public_key().public_bytes_raw()
        )


def sealing_public_key(raw: bytes) -> hpke.MLKEM768X25519PublicKey:
    """Parse a registered sealing public key, refusing bytes that are not one."""
    if len(raw) != SEALING_PUBLIC_BYTES:
        raise RegistrationError(
            f"a sealing public key is {SEALING_PUBLIC_BYTES} bytes ({SUITE_NAME}), got "
            f"{len(raw)}; register the public key the sigshare client generated"
        )
    try:
        mlkem_key = mlkem.MLKEM768PublicKey.from_public_bytes(raw[:MLKEM_PUBLIC_BYTES])
        x25519_key = x25519.X25519PublicKey.from_public_bytes(raw[MLKEM_PUBLIC_BYTES:])
    except ValueError:
        raise RegistrationError(
            "the sealing public key is not a valid ML-KEM-768 + X25519 key; register the "
            "public key the sigshare client generated"
        ) from None
    return hpke.MLKEM768X25519PublicKey(mlkem_key, x25519_key)


@dataclass(frozen=True, repr=False)
class SigningKey:
    """The private Ed25519 key of a member, kept as its 32-byte seed. ``repr`` never shows it."""

    seed: bytes = field(repr=False)

    def __post_init__(self) -> None:
        _check_seed(self.seed, "signing key")

    def __repr__(self) -> str:
        return f"SigningKey(fingerprint={signing_fingerprint(self.public_bytes())!r})"

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(seed=secrets.token_bytes(SEED_BYTES))

    def _private_key(self) -> ed25519.Ed25519PrivateKey:
        return ed25519.Ed25519PrivateKey.from_private_bytes(self.seed)

    def public_bytes(self) -> bytes:
        """The 32-byte Ed25519 public key."""
        return self._private_key().public_key().public_bytes_raw()

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message``."""
        return self._private_key().sign(message)


def _signing_public_key(raw: bytes) -> ed25519.Ed25519PublicKey:
    if len(raw) != SIGNING_PUBLIC_BYTES:
        raise RegistrationError(
            f"a signing public key is {SIGNING_PUBLIC_BYTES} bytes (Ed25519), got {len(raw)}; "
            "register the public key the sigshare client generated"
        )
    try:
        return ed25519.Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise RegistrationError(
            "the signing public key is not a valid Ed25519 key; register the public key the "
            "sigshare client generated"
        ) from None


def verify_signature(signing_public: bytes, signature: bytes, message: bytes) -> bool:
    """Whether ``signature`` is a valid Ed25519 signature of ``message`` by ``signing_public``.

    A wrong or malformed signature gives ``False``; a malformed public key raises
    :class:`RegistrationError`, because that is a different mistake (the wrong key was supplied).
    """
    key = _signing_public_key(signing_public)
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


def _fingerprint(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def _u16_prefixed(data: bytes) -> bytes:
    return struct.pack(">H", len(data)) + data


def signing_fingerprint(signing_public: bytes) -> str:
    """The fingerprint of a signing public key: how custodians are named and trusted."""
    _signing_public_key(signing_public)
    return _fingerprint(_SIGNING_FINGERPRINT_DOMAIN + signing_public)


def _check_sealing_length(sealing_public: bytes) -> None:
    if len(sealing_public) != SEALING_PUBLIC_BYTES:
        raise RegistrationError(
            f"a sealing public key is {SEALING_PUBLIC_BYTES} bytes ({SUITE_NAME}), got "
            f"{len(sealing_public)}; register the public key the sigshare client generated"
        )


def registration_fingerprint(sealing_public: bytes, signing_public: bytes) -> str:
    """The fingerprint of a member's key registration (both public keys together).

    Envelopes name the registration they are sealed to by this fingerprint, so a member who
    replaced its keys learns at once that an envelope was sealed to the old ones.
    """
    _check_sealing_length(sealing_public)
    _signing_public_key(signing_public)
    return _fingerprint(
        _REGISTRATION_FINGERPRINT_DOMAIN
        + _u16_prefixed(sealing_public)
        + _u16_prefixed(signing_public)
    )


@dataclass(frozen=True, repr=False)
class MemberKeys:
    """Both private keys of a member. ``repr`` shows the registration fingerprint only."""

    sealing: SealingKey
    signing: SigningKey

    def __repr__(self) -> str:
        return f"MemberKeys(fingerprint={self.fingerprint!r})"

    @classmethod
    def generate(cls) -> MemberKeys:
        return cls(sealing=SealingKey.generate(), signing=SigningKey.generate())

    @property
    def sealing_public(self) -> bytes:
        return self.sealing.public_bytes()

    @property
    def signing_public(self) -> bytes:
        return self.signing.public_bytes()

    @property
    def fingerprint(self) -> str:
        """The registration fingerprint of both public keys."""
        return registration_fingerprint(self.sealing_public, self.signing_public)

    @property
    def signing_fingerprint(self) -> str:
        """The fingerprint of the signing public key (what members trust a custodian by)."""
        return signing_fingerprint(self.signing_public)


def encode_member_name(name: str) -> bytes:
    """A member name as UTF-8, refusing names no registration or envelope may carry.

    Names are shown to people next to fingerprints, so control and other invisible characters
    (which could make two names look alike or break a terminal line) are refused.
    """
    if not isinstance(name, str) or not name:
        raise RegistrationError("a member name must be a non-empty string")
    if not name.isprintable():
        raise RegistrationError(
            f"member name {name!r} contains control or invisible characters; use visible "
            "characters and plain spaces only"
        )
    encoded = name.encode("utf-8")
    if len(encoded) > MAX_NAME_BYTES:
        raise RegistrationError(
            f"member name is {len(encoded)} bytes in UTF-8; at most {MAX_NAME_BYTES} are allowed"
        )
    return encoded


def registration_message(name: str, sealing_public: bytes, signing_public: bytes) -> bytes:
    """The bytes a member signs to register ``sealing_public`` and ``signing_public`` as ``name``.

    ``b"sigshare/v1/key-registration\\x00"`` followed by the UTF-8 name and both keys, each
    prefixed by its length as a big-endian u16, so no two registrations share a message.
    """
    _check_sealing_length(sealing_public)
    _signing_public_key(signing_public)
    return (
        _REGISTRATION_MESSAGE_DOMAIN
        + _u16_prefixed(encode_member_name(name))
        + _u16_prefixed(sealing_public)
        + _u16_prefixed(signing_public)
    )


def registration_proof(name: str, keys: MemberKeys) -> bytes:
    """The signature proving that whoever registers ``keys`` as ``name`` holds the signing key."""
    return keys.signing.sign(registration_message(name, keys.sealing_public, keys.signing_public))


def verify_registration_proof(
    name: str, sealing_public: bytes, signing_public: bytes, proof: bytes
) -> bool:
    """Whether ``proof`` was made by ``signing_public``'s holder for exactly this registration."""
    message = registration_message(name, sealing_public, signing_public)
    return verify_signature(signing_public, proof, message)


# ----------------------------------------------------------------------------- the key file


def member_keys_path(directory: Path) -> Path:
    """Where the member key file of ``directory`` lives."""
    return directory / MEMBER_KEYS_FILE


def write_member_keys(directory: Path, keys: MemberKeys, *, overwrite: bool = False) -> Path:
    """Write ``keys`` to ``directory/member.keys`` with mode 0600, atomically.

    ``directory`` is created with mode 0700 if missing. The file is written under a temporary
    name with mode 0600 from the start (never briefly readable by others), then linked into place
    (or renamed over the old file when ``overwrite`` is set). An existing file is kept unless
    ``overwrite`` is set: envelopes sealed to the old keys could no longer be opened.
    """
    target = member_keys_path(directory)
    refusal = (
        f"{target}: member keys already exist; refusing to replace them: envelopes sealed to "
        "the current keys could no longer be opened, and the forum admin must approve the new "
        "ones. Replace them only on purpose (overwrite)"
    )
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as error:
        raise MemberKeyFileError(
            f"{directory}: cannot create the key directory ({error.strerror})"
        ) from None
    if target.exists() and not overwrite:
        raise MemberKeyFileError(refusal)
    created = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    body = (
        "# sigshare member keys: this member's private sealing and signing keys.\n"
        "# Keep them private: mode 0600, never commit them, never send them anywhere.\n"
        "# Only their public halves are registered with the hub.\n"
        f"# registration fingerprint: {keys.fingerprint}\n"
        f"version = {MEMBER_KEYS_VERSION}\n"
        f'sealing_seed = "{base64.b64encode(keys.sealing.seed).decode("ascii")}"\n'
        f'signing_seed = "{base64.b64encode(keys.signing.seed).decode("ascii")}"\n'
        f'created = "{created}"\n'
    )
    try:
        write_private(target, body, overwrite=overwrite, prefix=".sigshare-member-keys-")
    except FileExistsError:
        raise MemberKeyFileError(refusal) from None
    return target


def _decode_seed(document: dict[str, object], name: str, file_path: Path) -> bytes:
    encoded = document.get(name)
    if not isinstance(encoded, str):
        raise MemberKeyFileError(f"{file_path}: needs a string field {name!r}")
    try:
        seed = base64.b64decode(encoded, validate=True)
    except binascii.Error:
        raise MemberKeyFileError(
            f"{file_path}: {name!r} is not valid base64; restore the file from a backup"
        ) from None
    if len(seed) != SEED_BYTES:
        raise MemberKeyFileError(
            f"{file_path}: {name!r} must hold {SEED_BYTES} bytes, got {len(seed)}; restore the "
            "file from a backup"
        )
    return seed


def load_member_keys(directory: Path) -> MemberKeys:
    """Load ``directory/member.keys``, refusing a file that group or others could read or write."""
    file_path = member_keys_path(directory)
    try:
        raw = read_private(file_path, limit=64 * 1024)  # a member key file is a few hundred bytes
    except FileNotFoundError:
        raise MemberKeyFileError(
            f"{file_path}: no member keys here; generate this member's keys first, or point to "
            "the directory that holds them"
        ) from None
    except PermissionError:
        raise MemberKeyFileError(f"{file_path}: permission denied") from None
    except IsADirectoryError:
        raise MemberKeyFileError(f"{file_path}: is a directory, not a member key file") from None
    except NotRegularFileError:
        raise MemberKeyFileError(f"{file_path}: not a regular file") from None
    except ExposedFileError as exposed:
        raise MemberKeyFileError(
            f"{file_path}: permissions {exposed.permissions} let others read or change the "
            f"member's private keys; run: chmod 600 {file_path}"
        ) from None
    except OSError as error:
        raise MemberKeyFileError(f"{file_path}: cannot open ({error.strerror})") from None
    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise MemberKeyFileError(
            f"{file_path}: not a sigshare member key file (not UTF-8 text)"
        ) from None
    except tomllib.TOMLDecodeError as error:
        # tomllib's messages name the syntax problem and its position, never the file's text.
        raise MemberKeyFileError(f"{file_path}: not a sigshare member key file ({error})") from None
    version = document.get("version")
    if type(version) is not int or version != MEMBER_KEYS_VERSION:
        raise MemberKeyFileError(
            f"{file_path}: unsupported member key file version {version!r} (this client reads "
            f"version {MEMBER_KEYS_VERSION}); use a sigshare client that wrote it"
        )
    return MemberKeys(
        sealing=SealingKey(seed=_decode_seed(document, "sealing_seed", file_path)),
        signing=SigningKey(seed=_decode_seed(document, "signing_seed", file_path)),
    )
