"""Phone numbers: canonical form is E.164 (``+14155550123``), parsed by ``phonenumbers``.

E.164 is the one spelling every format reduces to: ``(415) 555-0123`` (with default region US),
``+1 415-555-0123``, ``tel:+1-415-555-0123`` and full-width digits all give ``+14155550123``.

* A number without a leading ``+`` needs the forum-wide ``default_region`` (ISO 3166 alpha-2);
  with it, national spellings and the region's international prefix (``0044…`` with region GB)
  are understood. Without it such a number is refused: guessing a country would merge numbers
  of different subscribers.
* Extensions (``ext. 45``, ``x45``, ``;ext=45``) are dropped: E.164 has no extension, and the
  line that reaches the fraudster is the subscriber number. Two extensions of one PBX therefore
  share a canonical form.
* ``phonenumbers`` converts letters on a keypad (``+1 800 FLOWERS``); stray text usually turns
  into an impossible number and is refused.
* ``is_possible_number`` (length check) is required; ``strict=True`` also requires
  ``is_valid_number`` (assigned ranges). Number-plan metadata changes with ``phonenumbers``
  releases, so every member of a forum should pin the same version when ``strict`` is on.
"""

from __future__ import annotations

from typing import ClassVar

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat

from sigshare.sketch.errors import RejectReason
from sigshare.sketch.kinds.base import Kind

_PLUS_SIGNS = "+\uff0b"
_PARSE_DETAILS = {
    NumberParseException.INVALID_COUNTRY_CODE: "unknown or missing country calling code",
    NumberParseException.NOT_A_NUMBER: "not a phone number",
    NumberParseException.TOO_SHORT_AFTER_IDD: "too short after the international prefix",
    NumberParseException.TOO_SHORT_NSN: "too short to be a phone number",
    NumberParseException.TOO_LONG: "too long to be a phone number",
}


class PhoneKind(Kind):
    name: ClassVar[str] = "phone"
    code: ClassVar[int] = 2
    description: ClassVar[str] = "Phone number; canonical form: E.164 (+<country code><number>)"

    def __init__(self, *, default_region: str | None = None, strict: bool = False) -> None:
        if default_region is not None:
            default_region = default_region.upper()
            if default_region not in phonenumbers.SUPPORTED_REGIONS:
                raise ValueError(
                    f"default_region {default_region!r} is not a known ISO 3166 alpha-2 region"
                )
        self.default_region = default_region
        self.strict = strict

    def _canonicalise(self, value: str) -> str:
        try:
            number = phonenumbers.parse(value, self.default_region)
        except NumberParseException as error:
            if (
                error.error_type == NumberParseException.INVALID_COUNTRY_CODE
                and self.default_region is None
                and not any(char in _PLUS_SIGNS for char in value)
            ):
                detail = "no country code: write it as +<country code><number> or configure a "
                detail += "default_region"
            else:
                detail = _PARSE_DETAILS.get(error.error_type, "not a phone number")
            raise self.reject(RejectReason.NOT_A_PHONE_NUMBER, detail) from None
        if not phonenumbers.is_possible_number(number):
            raise self.reject(
                RejectReason.IMPOSSIBLE_PHONE_NUMBER,
                "wrong number of digits for its country calling code",
            )
        if self.strict and not phonenumbers.is_valid_number(number):
            raise self.reject(
                RejectReason.IMPOSSIBLE_PHONE_NUMBER,
                "not in an assigned number range of its country (strict mode)",
            )
        return phonenumbers.format_number(number, PhoneNumberFormat.E164)
