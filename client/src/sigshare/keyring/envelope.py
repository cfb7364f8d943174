"""Sealed forum-secret envelopes (SGEV v1): the forum secret sealed to one member, signed.

A custodian seals the forum secret of one key epoch to one member's registered sealing key
(HPKE base mode, MLKEM768-X25519 / HKDF-SHA256 / ChaCha20-Poly1305) and signs the result with its
Ed25519 signing key. The hub stores and relays envelopes it cannot open; a member opens only an
envelope signed by the custodian key it trusts, addressed to its own name and sealed to its own
current key registration.

Byte layout (big-endian; ``str`` is a u16 length followed by that many UTF-8 bytes, at most 200)::

    magic "SGEV" | u8 version = 1 | u16 kem_id | u16 kdf_id | u16 aead_id
    str key_id | str recipient | str custodian
    str recipient_fingerprint | str custodian_fingerprint
    i64 created_at (unix seconds) | i64 activate_at (unix seconds, or -1 for none)
    u32 sealed_length | sealed (HPKE enc || ciphertext), at most 4096 bytes
    u16 signature_length (= 64) | Ed25519 signature

Everything from the magic through ``activate_at`` is the **header**. The suite ids are
0x647A / 1 / 3. ``key_id`` follows the forum secret's key id rule; names are visible text (no
control characters); ``recipient_fingerprint`` is the recipient's registration fingerprint and
``custodian_fingerprint`` the fingerprint of the custodian's signing key. Times are whole seconds
from 1970-01-01T00:00:00Z up to 9999-12-31T23:59:59Z. Nothing may follow the signature.

- **HPKE**: ``info = b"sigshare/v1/envelope-info\\x00" + header``, no AAD, plaintext = the raw
  forum secret bytes. Binding the whole header into the key schedule means a sealed secret cannot
  be moved under another header (another key id, recipient or activation time) even by someone
  able to sign: opening fails.
- **Signature**: Ed25519 by the custodian over
  ``b"sigshare/v1/envelope\\x00" + header + u32 sealed_length + sealed``, i.e. every byte of the
  envelope before ``signature_length``.

With a 32-byte secret the sealed part is 1168 bytes (1120-byte encapsulation + 32 + 16-byte tag),
and an envelope is ``1375 + len(key_id) + len(recipient) + len(custodian)`` bytes (UTF-8).

This module checks one envelope on its own. Replay and ordering (an old envelope served again,
an older key epoch after a newer one) are not its job: the caller keeps the state that decides
whether an opened envelope is news.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography.exceptions import InvalidTag

from sigshare.keyring.errors import (
    EnvelopeAddressError,
    EnvelopeFormatError,
    EnvelopeSealError,
    EnvelopeSignatureError,
)
from sigshare.keyring.member_keys import (
    AEAD_ID,
    KDF_ID,
    KEM_ID,
    MAX_NAME_BYTES,
    SIGNATURE_BYTES,
    SUITE,
    SUITE_NAME,
    MemberKeys,
    encode_member_name,
    registration_fingerprint,
    sealing_public_key,
    signing_fingerprint,
    verify_signature,
)
from sigshare.sketch.errors import KeyFileError
from sigshare.sketch.keys import KEY_ID_RULE, MIN_SECRET_BYTES, ForumSecret, is_valid_key_id

MAGIC = b"SGEV"
ENVELOPE_VERSION = 1
MAX_FIELD_BYTES = MAX_NAME_BYTES
"""Longest ``str`` field (UTF-8 bytes)."""
MAX_SEALED_BYTES = 4096
HPKE_ENC_BYTES = 1120
"""Length of the MLKEM768-X25519 encapsulation (ML-KEM ciphertext + X25519 ephemeral key)."""
AEAD_TAG_BYTES = 16
MAX_SECRET_BYTES = MAX_SEALED_BYTES - HPKE_ENC_BYTES - AEAD_TAG_BYTES
"""Longest forum secret an envelope can carry."""
NO_ACTIVATION = -1
MAX_TIMESTAMP = 253_402_300_799
"""9999-12-31T23:59:59Z: the last second a :class:`datetime` can hold."""

_PREFIX = struct.Struct(">4sBHHH")
_TIMES = struct.Struct(">qq")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_STR_FIELDS = 5
MAX_ENVELOPE_BYTES = (
    _PREFIX.size
    + _STR_FIELDS * (2 + MAX_FIELD_BYTES)
    + _TIMES.size
    + 4
    + MAX_SEALED_BYTES
    + 2
    + SIGNATURE_BYTES
)
"""No valid v1 envelope is longer (5203 bytes): the hub refuses larger uploads unread."""

_INFO_DOMAIN = b"sigshare/v1/envelope-info\x00"
_SIGNATURE_DOMAIN = b"sigshare/v1/envelope\x00"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DAMAGED = "fetch it again from the hub, or ask the custodian to reseal it"


@dataclass(frozen=True)
class EnvelopeHeader:
    """What an envelope says about itself. Readable by anyone: it holds no secret."""

    key_id: str
    recipient: str
    custodian: str
    recipient_fingerprint: str
    """Registration fingerprint of the keys the secret is sealed to."""
    custodian_fingerprint: str
    """Fingerprint of the signing key that signed the envelope."""
    created_at: datetime
    """When the custodian sealed it (aware UTC, whole seconds)."""
    activate_at: datetime | None
    """When members should start using this key epoch, if the custodian said."""


@dataclass(frozen=True)
class OpenedEnvelope:
    """A verified envelope and the forum secret it carried (``repr`` hides the secret)."""

    header: EnvelopeHeader
    secret: ForumSecret
    """The forum secret of ``header.key_id`` (its own ``repr`` hides the secret bytes)."""


@dataclass(frozen=True)
class _ParsedEnvelope:
    header: EnvelopeHeader
    header_bytes: bytes
    sealed: bytes
    signature: bytes


def _timestamp(moment: datetime, what: str) -> int:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise EnvelopeFormatError(f"{what} must be a timezone-aware datetime (e.g. in UTC)")
    seconds = (moment - _EPOCH) // timedelta(seconds=1)
    if seconds < 0:  # a datetime ends in year 9999, so MAX_TIMESTAMP holds by construction
        raise EnvelopeFormatError(f"{what} must not be before 1970-01-01T00:00:00Z")
    return seconds


def _encode_str(data: bytes) -> bytes:
    return struct.pack(">H", len(data)) + data


def _encode_header(header: EnvelopeHeader) -> bytes:
    activate = (
        NO_ACTIVATION
        if header.activate_at is None
        else _timestamp(header.activate_at, "activate_at")
    )
    return (
        _PREFIX.pack(MAGIC, ENVELOPE_VERSION, KEM_ID, KDF_ID, AEAD_ID)
        + _encode_str(header.key_id.encode("ascii"))
        + _encode_str(encode_member_name(header.recipient))
        + _encode_str(encode_member_name(header.custodian))
        + _encode_str(header.recipient_fingerprint.encode("ascii"))
        + _encode_str(header.custodian_fingerprint.encode("ascii"))
        + _TIMES.pack(_timestamp(header.created_at, "created_at"), activate)
    )


def _hpke_info(header_bytes: bytes) -> bytes:
    return _INFO_DOMAIN + header_bytes


def _signed_message(header_bytes: bytes, sealed: bytes) -> bytes:
    return _SIGNATURE_DOMAIN + header_bytes + struct.pack(">I", len(sealed)) + sealed


def seal_envelope(
    secret: ForumSecret,
    *,
    recipient: str,
    recipient_sealing_public: bytes,
    recipient_signing_public: bytes,
    custodian: str,
    custodian_keys: MemberKeys,
    created_at: datetime,
    activate_at: datetime | None,
) -> bytes:
    """Seal ``secret`` to ``recipient``'s registered keys and sign it as ``custodian``.

    Times are stored in whole seconds (fractions are dropped). Raises
    :class:`~sigshare.keyring.errors.RegistrationError` for a malformed recipient key or name and
    :class:`~sigshare.keyring.errors.EnvelopeFormatError` for what the format cannot carry.
    """
    public_key = sealing_public_key(recipient_sealing_public)
    if len(secret.secret) > MAX_SECRET_BYTES:
        raise EnvelopeFormatError(
            f"the forum secret is {len(secret.secret)} bytes; an envelope carries at most "
            f"{MAX_SECRET_BYTES}: generate a shorter forum secret"
        )
    header = EnvelopeHeader(
        key_id=secret.key_id,
        recipient=recipient,
        custodian=custodian,
        recipient_fingerprint=registration_fingerprint(
            recipient_sealing_public, recipient_signing_public
        ),
        custodian_fingerprint=custodian_keys.signing_fingerprint,
        created_at=created_at,
        activate_at=activate_at,
    )
    header_bytes = _encode_header(header)
    sealed = SUITE.encrypt(secret.secret, public_key, info=_hpke_info(header_bytes))
    signature = custodian_keys.signing.sign(_signed_message(header_bytes, sealed))
    return (
        header_bytes
        + struct.pack(">I", len(sealed))
        + sealed
        + struct.pack(">H", len(signature))
        + signature
    )


class _Reader:
    """Reads the envelope front to back; every shortfall is a format error naming the field."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def take(self, size: int, what: str) -> bytes:
        end = self.offset + size
        if end > len(self.data):
            raise EnvelopeFormatError(f"envelope is truncated inside {what}; {_DAMAGED}")
        chunk = self.data[self.offset : end]
        self.offset = end
        return chunk

    def unpack(self, layout: struct.Struct, what: str) -> tuple[int, ...]:
        values: tuple[int, ...] = layout.unpack(self.take(layout.size, what))
        return values

    def text(self, what: str) -> str:
        (size,) = self.unpack(_U16, f"the length of {what}")
        if size > MAX_FIELD_BYTES:
            raise EnvelopeFormatError(
                f"envelope field {what} is {size} bytes; at most {MAX_FIELD_BYTES} are allowed; "
                f"{_DAMAGED}"
            )
        raw = self.take(size, what)
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise EnvelopeFormatError(f"envelope field {what} is not UTF-8; {_DAMAGED}") from None
        if not value or not value.isprintable():
            raise EnvelopeFormatError(
                f"envelope field {what} is empty or holds control characters; {_DAMAGED}"
            )
        return value


def _moment(seconds: int, what: str) -> datetime:
    if not 0 <= seconds <= MAX_TIMESTAMP:
        raise EnvelopeFormatError(
            f"envelope field {what} holds {seconds}, not a time between 1970 and 9999; {_DAMAGED}"
        )
    return _EPOCH + timedelta(seconds=seconds)


def _parse(data: bytes) -> _ParsedEnvelope:
    if len(data) > MAX_ENVELOPE_BYTES:
        raise EnvelopeFormatError(
            f"envelope is {len(data)} bytes; a v1 envelope has at most {MAX_ENVELOPE_BYTES}"
        )
    if not data.startswith(MAGIC):
        raise EnvelopeFormatError("not a sigshare forum-secret envelope (no SGEV magic)")
    reader = _Reader(data)
    _magic, version, kem_id, kdf_id, aead_id = reader.unpack(_PREFIX, "the envelope prefix")
    if version != ENVELOPE_VERSION:
        raise EnvelopeFormatError(
            f"envelope format version {version} is not supported (this client reads version "
            f"{ENVELOPE_VERSION}); update sigshare"
        )
    if (kem_id, kdf_id, aead_id) != (KEM_ID, KDF_ID, AEAD_ID):
        raise EnvelopeFormatError(
            f"envelope is sealed with HPKE suite kem {kem_id:#06x}, kdf {kdf_id}, aead "
            f"{aead_id}; this client supports only {SUITE_NAME} (kem {KEM_ID:#06x}, kdf "
            f"{KDF_ID}, aead {AEAD_ID}): ask the custodian to reseal it"
        )
    key_id = reader.text("key_id")
    if not is_valid_key_id(key_id):
        raise EnvelopeFormatError(f"envelope field key_id: {KEY_ID_RULE}; {_DAMAGED}")
    recipient = reader.text("recipient")
    custodian = reader.text("custodian")
    recipient_fingerprint = reader.text("recipient_fingerprint")
    custodian_fingerprint = reader.text("custodian_fingerprint")
    created, activate = reader.unpack(_TIMES, "the times")
    header = EnvelopeHeader(
        key_id=key_id,
        recipient=recipient,
        custodian=custodian,
        recipient_fingerprint=recipient_fingerprint,
        custodian_fingerprint=custodian_fingerprint,
        created_at=_moment(created, "created_at"),
        activate_at=None if activate == NO_ACTIVATION else _moment(activate, "activate_at"),
    )
    header_bytes = data[: reader.offset]
    (sealed_length,) = reader.unpack(_U32, "the sealed length")
    # Only HPKE's own minimum here: a plaintext too short for a forum secret is reported after
    # opening, as what it is (a custodian error), not as damage in transit.
    if not HPKE_ENC_BYTES + AEAD_TAG_BYTES <= sealed_length <= MAX_SEALED_BYTES:
        raise EnvelopeFormatError(
            f"envelope's sealed part is {sealed_length} bytes; a v1 envelope's is between "
            f"{HPKE_ENC_BYTES + AEAD_TAG_BYTES} and {MAX_SEALED_BYTES}; {_DAMAGED}"
        )
    sealed = reader.take(sealed_length, "the sealed part")
    (signature_length,) = reader.unpack(_U16, "the signature length")
    if signature_length != SIGNATURE_BYTES:
        raise EnvelopeFormatError(
            f"envelope signature is {signature_length} bytes, not {SIGNATURE_BYTES} (Ed25519); "
            f"{_DAMAGED}"
        )
    signature = reader.take(SIGNATURE_BYTES, "the signature")
    if reader.offset != len(data):
        raise EnvelopeFormatError(
            f"envelope has {len(data) - reader.offset} unexpected bytes after its signature; "
            f"{_DAMAGED}"
        )
    return _ParsedEnvelope(header, header_bytes, sealed, signature)


def read_header(data: bytes) -> EnvelopeHeader:
    """Parse an envelope and return its header, verifying nothing (no signature, no HPKE).

    The whole envelope must be well formed: a truncated or extended one, or one of an unknown
    version or suite, raises :class:`~sigshare.keyring.errors.EnvelopeFormatError`.
    """
    return _parse(data).header


def verify_envelope(data: bytes, *, custodian_signing_public: bytes) -> EnvelopeHeader:
    """Check an envelope's format and that ``custodian_signing_public`` signed it; its header.

    What the hub checks of an upload (it cannot open envelopes), and the first steps of
    :func:`open_envelope`: :class:`~sigshare.keyring.errors.EnvelopeFormatError` or
    :class:`~sigshare.keyring.errors.EnvelopeSignatureError`.
    """
    return _verified(data, custodian_signing_public).header


def _verified(data: bytes, custodian_signing_public: bytes) -> _ParsedEnvelope:
    parsed = _parse(data)
    header = parsed.header
    trusted = signing_fingerprint(custodian_signing_public)
    if header.custodian_fingerprint != trusted:
        raise EnvelopeSignatureError(
            f"envelope for key {header.key_id} was signed with custodian key "
            f"{header.custodian_fingerprint}, not the trusted custodian key {trusted}; if the "
            "custodian changed keys, confirm the new fingerprint with the forum admin first",
            signed_with=header.custodian_fingerprint,
            trusted=trusted,
        )
    message = _signed_message(parsed.header_bytes, parsed.sealed)
    if not verify_signature(custodian_signing_public, parsed.signature, message):
        raise EnvelopeSignatureError(
            f"envelope for key {header.key_id} names the trusted custodian key {trusted} but "
            f"its signature does not verify: it was altered after signing; {_DAMAGED}",
            signed_with=header.custodian_fingerprint,
            trusted=trusted,
        )
    return parsed


def open_envelope(
    data: bytes, *, recipient: str, keys: MemberKeys, custodian_signing_public: bytes
) -> OpenedEnvelope:
    """Verify an envelope for ``recipient`` and return the forum secret it carries.

    Checks, in this order, each with its own error: the format and suite
    (:class:`~sigshare.keyring.errors.EnvelopeFormatError`); that the trusted custodian key
    signed it (:class:`~sigshare.keyring.errors.EnvelopeSignatureError`); that it is addressed to
    ``recipient`` and sealed to ``keys``' registration
    (:class:`~sigshare.keyring.errors.EnvelopeAddressError`, so a member whose keys changed is
    told so rather than seeing a decryption failure); that HPKE opens it
    (:class:`~sigshare.keyring.errors.EnvelopeSealError`); that the plaintext is a valid forum
    secret for the header's key id (``EnvelopeFormatError``).
    """
    parsed = _verified(data, custodian_signing_public)
    header = parsed.header
    if header.recipient != recipient:
        raise EnvelopeAddressError(
            f"envelope for key {header.key_id} is addressed to member {header.recipient!r}, "
            f"not {recipient!r}; ask the custodian for an envelope addressed to {recipient!r}"
        )
    if header.recipient_fingerprint != keys.fingerprint:
        raise EnvelopeAddressError(
            f"envelope for key {header.key_id} is sealed to key registration "
            f"{header.recipient_fingerprint}, but this member's keys are {keys.fingerprint}; "
            "if the keys were replaced, have the new ones approved and ask the custodian to "
            "reseal the forum secret to them"
        )
    try:
        plaintext = SUITE.decrypt(
            parsed.sealed, keys.sealing.private_key(), info=_hpke_info(parsed.header_bytes)
        )
    except (InvalidTag, ValueError):
        raise EnvelopeSealError(
            f"envelope for key {header.key_id} is signed by the trusted custodian but cannot be "
            "opened with this member's keys: it was sealed to other keys, or its sealed secret "
            "or header was changed before signing; ask the custodian to reseal it"
        ) from None
    try:
        secret = ForumSecret(key_id=header.key_id, secret=plaintext)
    except KeyFileError:
        raise EnvelopeFormatError(
            f"envelope for key {header.key_id} carries a {len(plaintext)}-byte forum secret; a "
            f"forum secret has at least {MIN_SECRET_BYTES} bytes: ask the custodian to reseal "
            "a valid one"
        ) from None
    return OpenedEnvelope(header=header, secret=secret)
