"""Usernames (handles): canonical form is the Unicode NFKC case-folded handle without ``@``.

Platforms compare handles case-insensitively and fraudsters use compatibility look-alikes
(full-width letters, ligatures such as U+FB01), so the value is normalised with NFKC, case-folded
and normalised with NFKC again (case folding can decompose characters, e.g. U+01F0; the second
pass keeps the result in NFKC and idempotent), then one leading ``@`` is removed: ``@Bob``,
``bob`` and full-width ``BOB`` all become ``bob``.
A second leading ``@`` is refused rather than stripped, so ``@@bob`` cannot collide with ``bob``.
White space, control, invisible formatting (``Cf``, e.g. zero-width space) and surrogate
characters are refused. Length is 1 to 128 characters after normalisation.
"""

from __future__ import annotations

import unicodedata
from typing import ClassVar

from sigshare.sketch.errors import RejectReason
from sigshare.sketch.kinds.base import Kind

MAX_LENGTH = 128
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs"})


def _fold(value: str) -> str:
    once = unicodedata.normalize("NFKC", value).casefold()
    return unicodedata.normalize("NFKC", once)


class UsernameKind(Kind):
    name: ClassVar[str] = "username"
    code: ClassVar[int] = 8
    description: ClassVar[str] = (
        "Username or handle; canonical form: NFKC case-folded, without a leading @"
    )

    def _canonicalise(self, value: str) -> str:
        folded = _fold(value).removeprefix("@")
        if not folded:
            raise self.reject(RejectReason.EMPTY, "nothing after the leading @")
        if folded.startswith("@"):
            raise self.reject(RejectReason.BAD_SYNTAX, "more than one leading @")
        if any(
            char.isspace() or unicodedata.category(char) in _REFUSED_CATEGORIES for char in folded
        ):
            raise self.reject(
                RejectReason.BAD_CHARACTERS,
                "contains white space, control or invisible formatting characters",
            )
        if len(folded) > MAX_LENGTH:
            raise self.reject(RejectReason.TOO_LONG, f"longer than {MAX_LENGTH} characters")
        return folded
