"""Sealed forum-secret envelopes (SGEV v1): layout, round trips and refusal of every alteration.

The helpers below read and rebuild envelopes from the documented layout on their own (not with
the module's parser), so the tests check the code against the specification, and let a test play
a custodian who signs something wrong.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from sigshare.keyring.envelope import (
    MAX_ENVELOPE_BYTES,
    MAX_SECRET_BYTES,
    EnvelopeHeader,
    OpenedEnvelope,
    open_envelope,
    read_header,
    seal_envelope,
    verify_envelope,
)
from sigshare.keyring.errors import (
    EnvelopeAddressError,
    EnvelopeFormatError,
    EnvelopeSealError,
    EnvelopeSignatureError,
    KeyringError,
    RegistrationError,
)
from sigshare.keyring.member_keys import (
    SUITE,
    MemberKeys,
    SealingKey,
    SigningKey,
    sealing_public_key,
    verify_signature,
)
from sigshare.sketch.keys import ForumSecret

KEY_ID = "epoch7"
RECIPIENT = "alpha-bank"
OTHER = "beta-bank"
CUSTODIAN = "custodian-co"
SECRET = ForumSecret(KEY_ID, hashlib.sha256(b"envelope test secret").digest())
RECIPIENT_KEYS = MemberKeys(SealingKey(bytes(range(32))), SigningKey(bytes(range(32, 64))))
OTHER_KEYS = MemberKeys(SealingKey(bytes(range(1, 33))), SigningKey(bytes(range(33, 65))))
CUSTODIAN_KEYS = MemberKeys(SealingKey(bytes(range(64, 96))), SigningKey(bytes(range(96, 128))))
ROGUE_KEYS = MemberKeys(SealingKey(bytes(range(128, 160))), SigningKey(bytes(range(160, 192))))
CREATED = datetime(2026, 12, 1, tzinfo=UTC)
ACTIVATE = datetime(2026, 12, 8, tzinfo=UTC)
GOLDEN_ENVELOPE = (
    Path(__file__).resolve().parent.parent / "golden" / "hpke" / "sgev-v1-envelope.json"
)

# A v1 envelope with a 32-byte secret, apart from its three names (UTF-8 bytes): 11 prefix,
# 5 × 2 string lengths, 2 × 50 fingerprints, 2 × 8 times, 4 + 1168 sealed (1120-byte
# encapsulation, 32-byte secret, 16-byte tag), 2 + 64 signature.
FIXED_ENVELOPE_BYTES = 11 + 10 + 100 + 16 + 4 + 1168 + 2 + 64
assert FIXED_ENVELOPE_BYTES == 1375

FORMAT, SIGNATURE, ADDRESS, SEAL = (
    EnvelopeFormatError,
    EnvelopeSignatureError,
    EnvelopeAddressError,
    EnvelopeSealError,
)


def seal(
    *,
    secret: ForumSecret = SECRET,
    recipient: str = RECIPIENT,
    recipient_keys: MemberKeys = RECIPIENT_KEYS,
    custodian: str = CUSTODIAN,
    custodian_keys: MemberKeys = CUSTODIAN_KEYS,
    created_at: datetime = CREATED,
    activate_at: datetime | None = ACTIVATE,
) -> bytes:
    return seal_envelope(
        secret,
        recipient=recipient,
        recipient_sealing_public=recipient_keys.sealing_public,
        recipient_signing_public=recipient_keys.signing_public,
        custodian=custodian,
        custodian_keys=custodian_keys,
        created_at=created_at,
        activate_at=activate_at,
    )


def open_as(
    data: bytes,
    *,
    recipient: str = RECIPIENT,
    keys: MemberKeys = RECIPIENT_KEYS,
    custodian: MemberKeys = CUSTODIAN_KEYS,
) -> OpenedEnvelope:
    return open_envelope(
        data, recipient=recipient, keys=keys, custodian_signing_public=custodian.signing_public
    )


ENVELOPE = seal()


# ----------------------------------------------------------------------------- the spec, in test


@dataclass(frozen=True)
class Parts:
    """An envelope cut along the documented layout."""

    prefix: bytes
    key_id: bytes
    recipient: bytes
    custodian: bytes
    recipient_fingerprint: bytes
    custodian_fingerprint: bytes
    created: int
    activate: int
    sealed: bytes
    signature: bytes

    def header(self) -> bytes:
        strings = (
            self.key_id,
            self.recipient,
            self.custodian,
            self.recipient_fingerprint,
            self.custodian_fingerprint,
        )
        return (
            self.prefix
            + b"".join(struct.pack(">H", len(s)) + s for s in strings)
            + struct.pack(">qq", self.created, self.activate)
        )

    def signed_message(self) -> bytes:
        return b"sigshare/v1/envelope\x00" + self.header() + self.sealed_field()

    def sealed_field(self) -> bytes:
        return struct.pack(">I", len(self.sealed)) + self.sealed

    def envelope(self) -> bytes:
        return (
            self.header()
            + self.sealed_field()
            + struct.pack(">H", len(self.signature))
            + self.signature
        )

    def signed_by(self, keys: MemberKeys) -> bytes:
        """The envelope with a fresh signature by ``keys`` (a custodian signing these parts)."""
        return replace(self, signature=keys.signing.sign(self.signed_message())).envelope()

    def resealed(self, plaintext: bytes, to: MemberKeys) -> Parts:
        """These parts with ``plaintext`` sealed to ``to`` under this header (not yet signed)."""
        public = sealing_public_key(to.sealing_public)
        info = b"sigshare/v1/envelope-info\x00" + self.header()
        return replace(self, sealed=SUITE.encrypt(plaintext, public, info=info))


def split(data: bytes) -> Parts:
    offset = 11
    strings = []
    for _ in range(5):
        (size,) = struct.unpack_from(">H", data, offset)
        strings.append(data[offset + 2 : offset + 2 + size])
        offset += 2 + size
    created, activate = struct.unpack_from(">qq", data, offset)
    offset += 16
    (sealed_length,) = struct.unpack_from(">I", data, offset)
    sealed = data[offset + 4 : offset + 4 + sealed_length]
    offset += 4 + sealed_length
    assert struct.unpack_from(">H", data, offset) == (64,)
    signature = data[offset + 2 :]
    assert len(signature) == 64
    key_id, recipient, custodian, recipient_fingerprint, custodian_fingerprint = strings
    return Parts(
        prefix=data[:11],
        key_id=key_id,
        recipient=recipient,
        custodian=custodian,
        recipient_fingerprint=recipient_fingerprint,
        custodian_fingerprint=custodian_fingerprint,
        created=created,
        activate=activate,
        sealed=sealed,
        signature=signature,
    )


def flipped(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0x01]) + data[offset + 1 :]


def error_of(data: bytes) -> KeyringError | None:
    """The error opening ``data`` as the recipient raises, or None if it opens."""
    try:
        open_as(data)
    except KeyringError as error:
        return error
    return None


def outcome(data: bytes) -> type[KeyringError] | None:
    error = error_of(data)
    return None if error is None else type(error)


# ----------------------------------------------------------------------------- round trips


def test_seal_open_round_trip() -> None:
    opened = open_as(ENVELOPE)
    assert opened.secret == SECRET
    assert opened.header == EnvelopeHeader(
        key_id=KEY_ID,
        recipient=RECIPIENT,
        custodian=CUSTODIAN,
        recipient_fingerprint=RECIPIENT_KEYS.fingerprint,
        custodian_fingerprint=CUSTODIAN_KEYS.signing_fingerprint,
        created_at=CREATED,
        activate_at=ACTIVATE,
    )


def test_round_trip_without_activation_and_with_another_offset() -> None:
    created = datetime(2027, 1, 2, 3, 4, 5, 999_999, tzinfo=timezone(timedelta(hours=2)))
    opened = open_as(seal(created_at=created, activate_at=None))
    assert opened.header.activate_at is None
    # Stored in whole seconds, read back in UTC.
    assert opened.header.created_at == datetime(2027, 1, 2, 1, 4, 5, tzinfo=UTC)
    assert opened.header.created_at.tzinfo is UTC


def test_each_seal_is_fresh() -> None:
    again = seal()
    assert split(again).header() == split(ENVELOPE).header()
    assert split(again).sealed != split(ENVELOPE).sealed  # a new HPKE encapsulation every time
    assert open_as(again).secret == SECRET


def test_read_header_verifies_nothing_but_parses_everything() -> None:
    assert read_header(ENVELOPE) == open_as(ENVELOPE).header
    # Anyone can read the header: the hub has neither the recipient's nor the custodian's keys.
    assert read_header(seal(custodian_keys=ROGUE_KEYS)).custodian_fingerprint == (
        ROGUE_KEYS.signing_fingerprint
    )


def test_layout_matches_the_specification_byte_for_byte() -> None:
    parts = split(ENVELOPE)
    expected_header = (
        b"SGEV\x01\x64\x7a\x00\x01\x00\x03"
        + b"\x00\x06epoch7"
        + b"\x00\x0aalpha-bank"
        + b"\x00\x0ccustodian-co"
        + b"\x00\x32"
        + RECIPIENT_KEYS.fingerprint.encode()
        + b"\x00\x32"
        + CUSTODIAN_KEYS.signing_fingerprint.encode()
        + int(CREATED.timestamp()).to_bytes(8, "big")
        + int(ACTIVATE.timestamp()).to_bytes(8, "big")
    )
    assert parts.header() == expected_header
    assert ENVELOPE.startswith(expected_header + struct.pack(">I", 1168))
    assert parts.envelope() == ENVELOPE
    assert RECIPIENT_KEYS.signing.public_bytes() != CUSTODIAN_KEYS.signing.public_bytes()
    # The signature covers the header, the sealed length and the sealed bytes.
    assert verify_signature(
        CUSTODIAN_KEYS.signing_public,
        parts.signature,
        b"sigshare/v1/envelope\x00" + expected_header + struct.pack(">I", 1168) + parts.sealed,
    )
    # HPKE info is the header under its own domain label, without AAD.
    info = b"sigshare/v1/envelope-info\x00" + expected_header
    assert SUITE.decrypt(parts.sealed, RECIPIENT_KEYS.sealing.private_key(), info=info) == (
        SECRET.secret
    )
    no_activation = split(seal(activate_at=None))
    assert no_activation.activate == -1
    assert no_activation.header()[-8:] == b"\xff" * 8


@pytest.mark.parametrize(
    ("recipient", "custodian", "key_id"),
    [
        (RECIPIENT, CUSTODIAN, KEY_ID),
        ("b", "c", "k"),
        ("Bänk & Co", "Custodian Ω", "forum.2026-12"),
        ("r" * 200, "c" * 200, "k" * 32),
    ],
)
def test_size_is_fixed_apart_from_the_names(recipient: str, custodian: str, key_id: str) -> None:
    secret = ForumSecret(key_id, bytes(32))
    names = len(recipient.encode()) + len(custodian.encode()) + len(key_id)
    for activate_at in (ACTIVATE, None):
        data = seal(
            secret=secret, recipient=recipient, custodian=custodian, activate_at=activate_at
        )
        assert len(data) == FIXED_ENVELOPE_BYTES + names
    assert len(ENVELOPE) == 1403


def test_golden_envelope_still_opens() -> None:
    golden = json.loads(GOLDEN_ENVELOPE.read_text(encoding="utf-8"))
    recipient_keys = MemberKeys(
        SealingKey(bytes.fromhex(golden["recipient"]["sealing_seed"])),
        SigningKey(bytes.fromhex(golden["recipient"]["signing_seed"])),
    )
    custodian_signing = SigningKey(bytes.fromhex(golden["custodian"]["signing_seed"]))
    data = bytes.fromhex(golden["envelope"])
    assert len(data) == golden["size"] == 1403
    assert recipient_keys.fingerprint == golden["recipient"]["fingerprint"]
    opened = open_envelope(
        data,
        recipient=golden["recipient"]["name"],
        keys=recipient_keys,
        custodian_signing_public=custodian_signing.public_bytes(),
    )
    assert opened.secret == ForumSecret(golden["key_id"], bytes.fromhex(golden["secret"]))
    assert opened.header == EnvelopeHeader(
        key_id="epoch7",
        recipient="alpha-bank",
        custodian="custodian-co",
        recipient_fingerprint=golden["recipient"]["fingerprint"],
        custodian_fingerprint=golden["custodian"]["signing_fingerprint"],
        created_at=CREATED,
        activate_at=ACTIVATE,
    )
    # The header is deterministic: sealing the same inputs today writes the same header bytes.
    assert split(data).header() == split(seal()).header()


# ----------------------------------------------------------------------------- every byte


def expected_for_single_flips(parts: Parts) -> list[type[KeyringError]]:
    """What flipping bit 0 of each byte of an envelope of ``parts`` must raise, by offset.

    Structure (prefix, every length field) becomes a format error: the test names have even
    lengths, so a length one larger takes in the next field's 0x00 high byte (a control
    character) and the parse fails. Content (string bytes, low time bytes, sealed bytes and the
    signature) still parses, and the signature no longer verifies. In a time, bytes 0-2 moved by
    2^40 or more leave the years 1970-9999 (format); byte 3 moves it by 2^32 s (~136 years).
    """
    expected: list[type[KeyringError]] = [FORMAT] * 11
    for text in (
        parts.key_id,
        parts.recipient,
        parts.custodian,
        parts.recipient_fingerprint,
        parts.custodian_fingerprint,
    ):
        assert len(text) % 2 == 0
        expected += [FORMAT] * 2 + [SIGNATURE] * len(text)
    expected += ([FORMAT] * 3 + [SIGNATURE] * 5) * 2
    expected += [FORMAT] * 4 + [SIGNATURE] * len(parts.sealed)
    expected += [FORMAT] * 2 + [SIGNATURE] * 64
    return expected


def test_a_flipped_bit_anywhere_is_refused_with_the_right_error() -> None:
    expected = expected_for_single_flips(split(ENVELOPE))
    assert len(expected) == len(ENVELOPE)
    observed = [outcome(flipped(ENVELOPE, offset)) for offset in range(len(ENVELOPE))]
    assert observed == expected


def test_every_byte_of_a_missing_activation_is_structure() -> None:
    data = seal(activate_at=None)
    start = len(split(data).header()) - 8
    observed = [outcome(flipped(data, offset)) for offset in range(start, start + 8)]
    assert observed == [FORMAT] * 8  # -1 is the only negative time


def test_custodian_signing_a_changed_header_never_yields_a_secret() -> None:
    # A custodian (or anyone with its key) re-signs after each change: the HPKE info binds the
    # header, so changed content fails to open; changed addressing is refused before that.
    parts = split(ENVELOPE)
    header_length = len(parts.header())
    expected: list[type[KeyringError]] = [FORMAT] * 11
    for text, error in (
        (parts.key_id, SEAL),
        (parts.recipient, ADDRESS),
        (parts.custodian, SEAL),
        (parts.recipient_fingerprint, ADDRESS),
        (parts.custodian_fingerprint, SIGNATURE),  # names a key the member does not trust
    ):
        expected += [FORMAT] * 2 + [error] * len(text)
    expected += ([FORMAT] * 3 + [SEAL] * 5) * 2
    assert len(expected) == header_length
    observed = []
    signature_start = len(ENVELOPE) - 64
    for offset in range(header_length):
        data = flipped(ENVELOPE, offset)
        message = b"sigshare/v1/envelope\x00" + data[: signature_start - 2]
        observed.append(outcome(data[:signature_start] + CUSTODIAN_KEYS.signing.sign(message)))
    assert observed == expected


def test_custodian_signing_a_changed_sealed_part_never_yields_a_secret() -> None:
    parts = split(ENVELOPE)
    observed = []
    started = time.perf_counter()
    for offset in range(len(parts.sealed)):
        tampered = replace(parts, sealed=flipped(parts.sealed, offset))
        observed.append(outcome(tampered.signed_by(CUSTODIAN_KEYS)))
    assert observed == [SEAL] * 1168
    assert time.perf_counter() - started < 60  # about a second; a hang would be a bug


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"key_id": b"epoch8"}, SEAL),
        ({"custodian": b"custodian-cp"}, SEAL),
        ({"created": int(CREATED.timestamp()) + 1}, SEAL),
        ({"activate": -1}, SEAL),
        ({"recipient": b"alpha-banj"}, ADDRESS),
        ({"recipient_fingerprint": OTHER_KEYS.fingerprint.encode()}, ADDRESS),
        ({"custodian_fingerprint": ROGUE_KEYS.signing_fingerprint.encode()}, SIGNATURE),
    ],
)
def test_re_signed_header_edits(change: dict[str, Any], error: type[KeyringError]) -> None:
    with pytest.raises(error):
        open_as(replace(split(ENVELOPE), **change).signed_by(CUSTODIAN_KEYS))


# ----------------------------------------------------------------------------- who may open


def test_signed_by_another_custodian_key() -> None:
    data = seal(custodian_keys=ROGUE_KEYS)
    with pytest.raises(EnvelopeSignatureError) as refused:
        open_as(data)
    error = refused.value
    assert error.signed_with == ROGUE_KEYS.signing_fingerprint
    assert error.trusted == CUSTODIAN_KEYS.signing_fingerprint
    assert str(error).startswith(
        f"envelope for key epoch7 was signed with custodian key {ROGUE_KEYS.signing_fingerprint}, "
        f"not the trusted custodian key {CUSTODIAN_KEYS.signing_fingerprint}"
    )


def test_signature_of_another_key_under_the_trusted_fingerprint() -> None:
    # A forger writes the trusted fingerprint but cannot make its signature.
    data = split(ENVELOPE).signed_by(ROGUE_KEYS)
    with pytest.raises(EnvelopeSignatureError, match="signature does not verify") as refused:
        open_as(data)
    assert refused.value.signed_with == refused.value.trusted == CUSTODIAN_KEYS.signing_fingerprint


def test_verify_checks_the_signature_without_opening() -> None:
    """What the hub checks of an upload: it holds the custodian's public key, no member's."""
    custodian = CUSTODIAN_KEYS.signing_public
    assert verify_envelope(ENVELOPE, custodian_signing_public=custodian) == read_header(ENVELOPE)
    with pytest.raises(EnvelopeSignatureError, match="not the trusted custodian key"):
        verify_envelope(seal(custodian_keys=ROGUE_KEYS), custodian_signing_public=custodian)
    with pytest.raises(EnvelopeSignatureError, match="signature does not verify"):
        verify_envelope(split(ENVELOPE).signed_by(ROGUE_KEYS), custodian_signing_public=custodian)


def test_member_trusting_another_custodian_refuses_a_genuine_envelope() -> None:
    with pytest.raises(EnvelopeSignatureError, match="not the trusted custodian key"):
        open_as(ENVELOPE, custodian=ROGUE_KEYS)


def test_addressed_to_another_member() -> None:
    data = seal(recipient=OTHER, recipient_keys=OTHER_KEYS)
    with pytest.raises(EnvelopeAddressError) as refused:
        open_as(data)
    assert str(refused.value) == (
        "envelope for key epoch7 is addressed to member 'beta-bank', not 'alpha-bank'; ask the "
        "custodian for an envelope addressed to 'alpha-bank'"
    )
    assert open_as(data, recipient=OTHER, keys=OTHER_KEYS).secret == SECRET


def test_sealed_to_another_registration_then_renamed_and_re_signed() -> None:
    # The custodian mis-addresses: an envelope sealed to beta's keys, renamed to alpha, signed.
    parts = split(seal(recipient=OTHER, recipient_keys=OTHER_KEYS))
    data = replace(parts, recipient=RECIPIENT.encode()).signed_by(CUSTODIAN_KEYS)
    with pytest.raises(EnvelopeAddressError) as refused:
        open_as(data)
    assert str(refused.value).startswith(
        f"envelope for key epoch7 is sealed to key registration {OTHER_KEYS.fingerprint}, but "
        f"this member's keys are {RECIPIENT_KEYS.fingerprint}"
    )


def test_member_with_replaced_keys_is_told_so_before_any_decryption() -> None:
    # Pinned order: the registration fingerprint is compared before HPKE runs, so a member whose
    # keys changed sees an address error naming both registrations, not a decryption failure.
    new_keys = MemberKeys(SealingKey(bytes(range(2, 34))), RECIPIENT_KEYS.signing)
    with pytest.raises(EnvelopeAddressError, match="if the keys were replaced"):
        open_as(ENVELOPE, keys=new_keys)


def test_sealed_to_other_keys_under_the_right_fingerprint() -> None:
    # The custodian wrote alpha's fingerprint but sealed to beta's key: only HPKE can tell.
    parts = split(ENVELOPE).resealed(SECRET.secret, to=OTHER_KEYS)
    with pytest.raises(EnvelopeSealError, match="cannot be opened with this member's keys"):
        open_as(parts.signed_by(CUSTODIAN_KEYS))


def test_plaintext_that_is_no_forum_secret() -> None:
    parts = split(ENVELOPE).resealed(bytes(16), to=RECIPIENT_KEYS)
    with pytest.raises(EnvelopeFormatError) as refused:
        open_as(parts.signed_by(CUSTODIAN_KEYS))
    assert str(refused.value) == (
        "envelope for key epoch7 carries a 16-byte forum secret; a forum secret has at least 32 "
        "bytes: ask the custodian to reseal a valid one"
    )


# ----------------------------------------------------------------------------- format


def test_every_truncation_is_a_format_error() -> None:
    for size in range(len(ENVELOPE)):
        with pytest.raises(EnvelopeFormatError):
            read_header(ENVELOPE[:size])
    with pytest.raises(EnvelopeFormatError, match="truncated inside the signature"):
        open_as(ENVELOPE[:-1])


@pytest.mark.parametrize("extra", [b"\x00", b"x" * 64])
def test_extended_envelope_is_a_format_error(extra: bytes) -> None:
    with pytest.raises(EnvelopeFormatError, match=f"{len(extra)} unexpected bytes after"):
        open_as(ENVELOPE + extra)
    with pytest.raises(EnvelopeFormatError):
        read_header(ENVELOPE + extra)


def test_oversized_input_is_refused_before_parsing() -> None:
    assert MAX_ENVELOPE_BYTES == 11 + 5 * 202 + 16 + 4 + 4096 + 2 + 64 == 5203
    with pytest.raises(EnvelopeFormatError, match="5204 bytes; a v1 envelope has at most 5203"):
        read_header(ENVELOPE + bytes(MAX_ENVELOPE_BYTES + 1 - len(ENVELOPE)))


def test_largest_sealable_envelope_fits_the_bound() -> None:
    secret = ForumSecret("k" * 32, bytes(range(256)) * 11 + bytes(MAX_SECRET_BYTES - 2816))
    assert MAX_SECRET_BYTES == 4096 - 1120 - 16 == 2960
    data = seal(secret=secret, recipient="r" * 200, custodian="c" * 200)
    assert len(data) <= MAX_ENVELOPE_BYTES
    assert len(split(data).sealed) == 4096
    assert open_as(data, recipient="r" * 200).secret == secret


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "no SGEV magic"),
        (b"SGBF" + ENVELOPE[4:], "no SGEV magic"),
        (ENVELOPE[:4] + b"\x02" + ENVELOPE[5:], "version 2 is not supported"),
        (ENVELOPE[:5] + b"\x00\x20" + ENVELOPE[7:], "kem 0x0020, kdf 1, aead 3"),
        (ENVELOPE[:9] + b"\x00\x01" + ENVELOPE[11:], "aead 1; this client supports only"),
        (ENVELOPE[:11] + b"\x00\xc9" + ENVELOPE[13:], "key_id is 201 bytes"),
    ],
)
def test_format_errors_say_what_is_wrong(data: bytes, message: str) -> None:
    with pytest.raises(EnvelopeFormatError, match=message):
        read_header(data)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"key_id": b"bad/key"}, "key_id: key id must be"),
        ({"recipient": b""}, "recipient is empty or holds control characters"),
        ({"custodian": b"line\nbreak"}, "custodian is empty or holds control characters"),
        ({"recipient": b"\xff\xfe"}, "recipient is not UTF-8"),
        ({"created": -5}, "created_at holds -5"),
        ({"activate": -2}, "activate_at holds -2"),
        ({"activate": 253_402_300_800}, "not a time between 1970 and 9999"),
        ({"sealed": bytes(1135)}, "sealed part is 1135 bytes"),
        ({"sealed": bytes(4097)}, "sealed part is 4097 bytes"),
    ],
)
def test_unparsable_fields(change: dict[str, Any], message: str) -> None:
    data = replace(split(ENVELOPE), **change).signed_by(CUSTODIAN_KEYS)
    with pytest.raises(EnvelopeFormatError, match=message):
        read_header(data)
    with pytest.raises(EnvelopeFormatError, match=message):
        open_as(data)


def test_latest_representable_time_is_read() -> None:
    data = replace(split(ENVELOPE), activate=253_402_300_799).signed_by(CUSTODIAN_KEYS)
    assert read_header(data).activate_at == datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)


# ----------------------------------------------------------------------------- sealing refusals


def test_seal_refuses_what_the_format_cannot_carry() -> None:
    with pytest.raises(EnvelopeFormatError, match="created_at must be a timezone-aware"):
        seal(created_at=datetime(2026, 12, 1))  # naive: the point of the test
    with pytest.raises(EnvelopeFormatError, match="activate_at must be a timezone-aware"):
        seal(activate_at=datetime(2026, 12, 1))
    with pytest.raises(EnvelopeFormatError, match="must not be before 1970"):
        seal(created_at=datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC))
    with pytest.raises(EnvelopeFormatError, match="2961 bytes; an envelope carries at most 2960"):
        seal(secret=ForumSecret(KEY_ID, bytes(2961)))
    with pytest.raises(RegistrationError, match="control or invisible"):
        seal(recipient="alpha\nbank")
    with pytest.raises(RegistrationError, match="201 bytes"):
        seal(custodian="c" * 201)


def test_seal_refuses_a_malformed_recipient_key() -> None:
    with pytest.raises(RegistrationError, match="1216 bytes"):
        seal_envelope(
            SECRET,
            recipient=RECIPIENT,
            recipient_sealing_public=RECIPIENT_KEYS.sealing_public[:-1],
            recipient_signing_public=RECIPIENT_KEYS.signing_public,
            custodian=CUSTODIAN,
            custodian_keys=CUSTODIAN_KEYS,
            created_at=CREATED,
            activate_at=None,
        )
    with pytest.raises(RegistrationError, match="signing public key is 32 bytes"):
        seal_envelope(
            SECRET,
            recipient=RECIPIENT,
            recipient_sealing_public=RECIPIENT_KEYS.sealing_public,
            recipient_signing_public=b"",
            custodian=CUSTODIAN,
            custodian_keys=CUSTODIAN_KEYS,
            created_at=CREATED,
            activate_at=None,
        )


# ----------------------------------------------------------------------------- the secret stays


def secret_spellings(secret: bytes) -> list[str]:
    return [
        secret.hex(),
        secret.hex().upper(),
        base64.b64encode(secret).decode(),
        base64.urlsafe_b64encode(secret).decode(),
        repr(secret),
        str(list(secret)),
        secret.hex()[:16],
        base64.b64encode(secret).decode()[:12],
    ]


def test_secret_never_appears_in_errors_or_reprs() -> None:
    parts = split(ENVELOPE)
    provoked = [error_of(flipped(ENVELOPE, offset)) for offset in range(len(ENVELOPE))]
    provoked += [
        error_of(seal(recipient=OTHER, recipient_keys=OTHER_KEYS)),
        error_of(replace(parts, sealed=flipped(parts.sealed, 7)).signed_by(CUSTODIAN_KEYS)),
        error_of(parts.resealed(SECRET.secret[:20], to=RECIPIENT_KEYS).signed_by(CUSTODIAN_KEYS)),
    ]
    errors = [error for error in provoked if error is not None]
    assert len(errors) == len(provoked)
    assert {type(error) for error in errors} == {FORMAT, SIGNATURE, ADDRESS, SEAL}
    opened = open_as(ENVELOPE)
    texts = [repr(opened), str(opened), repr(opened.secret), repr(opened.header)]
    texts += [str(error) for error in errors] + [repr(error) for error in errors]
    for text in texts:
        for spelling in secret_spellings(SECRET.secret):
            assert spelling not in text
    assert "ForumSecret(key_id='epoch7')" in repr(opened)
