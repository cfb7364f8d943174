"""Payment fingerprints: an opaque token from a payment processor, kept exactly as issued.

Examples are a Stripe card ``fingerprint`` or a network-token reference: stable per card for
one processor account and not reversible to the card number. Processors issue them
case-sensitively, so the canonical form is the value itself (surrounding white space removed).
Allowed characters are ``A-Z a-z 0-9 _ . : = + / -`` and the length is 6 to 128.

A raw card number (PAN) must never enter the hub: if the value, without spaces and dashes, is
13 to 19 digits passing the Luhn check it is refused with ``LOOKS_LIKE_CARD_NUMBER``. About one
all-digit fingerprint in ten of that length passes Luhn by chance and is refused too; processor
fingerprints are alphanumeric in practice, so that cost is accepted.
"""

from __future__ import annotations

import re
from typing import ClassVar

from sigshare.sketch.errors import RejectReason
from sigshare.sketch.kinds.base import Kind

MIN_LENGTH = 6
MAX_LENGTH = 128
_ALLOWED = re.compile(r"[A-Za-z0-9_.:=+/-]+")
_SEPARATORS = re.compile(r"[\s-]")
_CARD_DIGITS = re.compile(r"[0-9]{13,19}")


def luhn_valid(digits: str) -> bool:
    """Whether an ASCII digit string passes the Luhn (mod 10) check."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = int(char)
        if position % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


class PaymentFingerprintKind(Kind):
    name: ClassVar[str] = "payment_fingerprint"
    code: ClassVar[int] = 6
    description: ClassVar[str] = (
        "Payment processor fingerprint (never a card number); canonical form: the value as issued"
    )

    def _canonicalise(self, value: str) -> str:
        compact = _SEPARATORS.sub("", value)
        if _CARD_DIGITS.fullmatch(compact) and luhn_valid(compact):
            raise self.reject(
                RejectReason.LOOKS_LIKE_CARD_NUMBER,
                "looks like a card number: submit the processor's fingerprint, never a raw card "
                "number",
            )
        if len(value) > MAX_LENGTH:
            raise self.reject(RejectReason.TOO_LONG, f"longer than {MAX_LENGTH} characters")
        if not _ALLOWED.fullmatch(value):
            raise self.reject(
                RejectReason.BAD_CHARACTERS, "allowed characters are A-Z a-z 0-9 _ . : = + / -"
            )
        if len(value) < MIN_LENGTH:
            raise self.reject(RejectReason.BAD_SYNTAX, f"shorter than {MIN_LENGTH} characters")
        return value
