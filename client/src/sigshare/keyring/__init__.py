"""sigshare.keyring — member key pairs and the sealed envelopes that carry the forum secret.

A custodian seals the forum secret to each member's registered public key (HPKE with the hybrid
post-quantum KEM MLKEM768-X25519) and signs the envelope; the hub relays envelopes it cannot
open. This package is pure computation on bytes and local files: no network, no database.
:mod:`sigshare.keyring.member_keys` holds the keys, their file and fingerprints;
:mod:`sigshare.keyring.envelope` defines the envelope byte format (SGEV v1).
"""

from sigshare.keyring.envelope import (
    MAX_ENVELOPE_BYTES,
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
    MemberKeyFileError,
    RegistrationError,
)
from sigshare.keyring.member_keys import (
    AEAD_ID,
    KDF_ID,
    KEM_ID,
    SEALING_PUBLIC_BYTES,
    SIGNING_PUBLIC_BYTES,
    SUITE,
    SUITE_NAME,
    MemberKeys,
    SealingKey,
    SigningKey,
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

__all__ = [
    "AEAD_ID",
    "KDF_ID",
    "KEM_ID",
    "MAX_ENVELOPE_BYTES",
    "SEALING_PUBLIC_BYTES",
    "SIGNING_PUBLIC_BYTES",
    "SUITE",
    "SUITE_NAME",
    "EnvelopeAddressError",
    "EnvelopeFormatError",
    "EnvelopeHeader",
    "EnvelopeSealError",
    "EnvelopeSignatureError",
    "KeyringError",
    "MemberKeyFileError",
    "MemberKeys",
    "OpenedEnvelope",
    "RegistrationError",
    "SealingKey",
    "SigningKey",
    "load_member_keys",
    "open_envelope",
    "read_header",
    "registration_fingerprint",
    "registration_message",
    "registration_proof",
    "seal_envelope",
    "sealing_public_key",
    "signing_fingerprint",
    "verify_envelope",
    "verify_registration_proof",
    "verify_signature",
    "write_member_keys",
]
