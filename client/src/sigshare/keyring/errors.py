"""Typed errors raised by the member keyring and the sealed forum-secret envelopes.

Each error carries a stable ``code`` so transports (CLI, gRPC) can translate it once, at the edge.
Messages say what is wrong and what to do about it; they never contain private key seeds, the
forum secret or any other secret bytes (public keys appear only as fingerprints).
"""

from __future__ import annotations


class KeyringError(Exception):
    """Base class of every error the keyring raises on purpose."""

    code = "keyring_error"


class MemberKeyFileError(KeyringError):
    """The member key file is missing, readable by others, malformed, or already exists."""

    code = "member_key_file"


class RegistrationError(KeyringError, ValueError):
    """A member name or public key cannot be used: wrong length, unparsable, or unencodable.

    The hub raises it for a malformed key registration; members for a malformed recipient.
    """

    code = "bad_registration"


class EnvelopeFormatError(KeyringError, ValueError):
    """Not an envelope, truncated, extended, of an unknown version or suite, or a field too long."""

    code = "envelope_format"


class EnvelopeSignatureError(KeyringError):
    """The envelope is not signed by the trusted custodian key (or was altered after signing)."""

    code = "envelope_signature"

    def __init__(self, message: str, *, signed_with: str, trusted: str) -> None:
        super().__init__(message)
        self.signed_with = signed_with
        """Custodian signing-key fingerprint the envelope names."""
        self.trusted = trusted
        """Fingerprint of the custodian signing key the caller trusts."""


class EnvelopeAddressError(KeyringError):
    """The envelope is addressed to another member, or sealed to another key registration."""

    code = "envelope_address"


class EnvelopeSealError(KeyringError):
    """HPKE could not open the sealed secret: the ciphertext or its bound header changed."""

    code = "envelope_seal"
