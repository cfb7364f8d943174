"""Device identifiers: a UUID in canonical form, or an opaque id kept exactly as issued.

Most platform device ids (IDFV, IDFA, Android ``ANDROID_ID`` variants, SDK install ids) are
UUIDs, written with or without braces, hyphens or a ``urn:uuid:`` prefix and in either case;
those become the lower-case hyphenated form (``123e4567-e89b-12d3-a456-426614174000``). A
32-digit hex string is read as a UUID too. Only the common spellings are recognised (all four
hyphens or none, balanced braces); anything else is an opaque id: printable ASCII without white
space, at most 256 characters, case preserved because vendors' ids are case-sensitive.
"""

from __future__ import annotations

import re
import uuid
from typing import ClassVar

from sigshare.sketch.errors import RejectReason
from sigshare.sketch.kinds.base import Kind

MAX_LENGTH = 256
_HEX_UUID = r"[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}|[0-9a-f]{32}"
_UUID = re.compile(rf"(?:urn:uuid:)?(?:{_HEX_UUID}|\{{(?:{_HEX_UUID})\}})", re.IGNORECASE)
_OPAQUE = re.compile(r"[\x21-\x7e]+")


class DeviceIdKind(Kind):
    name: ClassVar[str] = "device_id"
    code: ClassVar[int] = 7
    description: ClassVar[str] = (
        "Device id; canonical form: lower-case hyphenated UUID, or the opaque id as issued"
    )

    def _canonicalise(self, value: str) -> str:
        if _UUID.fullmatch(value):
            return str(uuid.UUID(value))
        if len(value) > MAX_LENGTH:
            raise self.reject(RejectReason.TOO_LONG, f"longer than {MAX_LENGTH} characters")
        if not _OPAQUE.fullmatch(value):
            raise self.reject(
                RejectReason.BAD_CHARACTERS,
                "an opaque device id must be printable ASCII without white space",
            )
        return value
