"""Typed errors raised by the sketch core.

Each error carries a stable ``code`` so transports (CLI, gRPC) can translate it once, at the edge.
Messages never contain key material; the ones about input values name the reason, not the value.
"""

from __future__ import annotations

from enum import StrEnum


class SketchError(Exception):
    """Base class of every error the sketch core raises on purpose."""

    code = "sketch_error"


class RejectReason(StrEnum):
    """Why a raw indicator value was refused. Stable strings: they appear in reject counts."""

    EMPTY = "empty"
    TOO_LONG = "too_long"
    BAD_CHARACTERS = "bad_characters"
    BAD_SYNTAX = "bad_syntax"
    BAD_DOMAIN = "bad_domain"
    BAD_ADDRESS = "bad_address"
    NOT_A_PHONE_NUMBER = "not_a_phone_number"
    IMPOSSIBLE_PHONE_NUMBER = "impossible_phone_number"
    PREFIX_TOO_SHORT = "prefix_too_short"
    LOOKS_LIKE_CARD_NUMBER = "looks_like_card_number"
    UNKNOWN_KIND = "unknown_kind"


class InvalidValueError(SketchError, ValueError):
    """A raw value cannot be canonicalised for its kind."""

    code = "invalid_value"

    def __init__(self, kind: str, reason: RejectReason, detail: str) -> None:
        super().__init__(f"invalid {kind}: {detail}")
        self.kind = kind
        self.reason = reason
        self.detail = detail


class UnknownKindError(SketchError, KeyError):
    """No kind of that name is registered."""

    code = "unknown_kind"

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"unknown kind {name!r}; known kinds: {', '.join(known)}")
        self.name = name

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0])


class KeyFileError(SketchError):
    """The forum secret file is missing, malformed, too weak or readable by others."""

    code = "key_file"


class ParameterError(SketchError, ValueError):
    """Sketch parameters are invalid or do not match each other."""

    code = "bad_parameters"


class FormatError(SketchError, ValueError):
    """Serialized sketch bytes are malformed, truncated, corrupted or of an unknown version."""

    code = "bad_format"


class SaturationError(SketchError, ValueError):
    """A Bloom filter is fuller than its declared count allows: possible poisoning."""

    code = "saturated"
