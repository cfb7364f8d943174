"""The contract every indicator kind implements, and the batch canonicaliser built on it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar

from sigshare.sketch.errors import InvalidValueError, RejectReason

MAX_RAW_LENGTH = 4096
"""No raw value of any kind is longer than this; longer input is refused before parsing."""


class Kind(ABC):
    """One indicator kind: a stable name, a one-byte wire code and a canonicaliser.

    ``canonicalise`` maps every spelling of the same real-world identifier to one string, or
    raises :class:`InvalidValueError`. Two members with the same value must produce the same
    canonical string, so canonicalisation may depend only on the value and on options that the
    whole forum shares (never on a member's locale or clock).
    """

    name: ClassVar[str]
    code: ClassVar[int]
    description: ClassVar[str]

    def canonicalise(self, value: str) -> str:
        """Return the canonical form of ``value`` or raise :class:`InvalidValueError`."""
        if not isinstance(value, str):
            raise self.reject(RejectReason.BAD_SYNTAX, "value is not text")
        if len(value) > MAX_RAW_LENGTH:
            raise self.reject(RejectReason.TOO_LONG, f"longer than {MAX_RAW_LENGTH} characters")
        stripped = value.strip()
        if not stripped:
            raise self.reject(RejectReason.EMPTY, "value is empty")
        return self._canonicalise(stripped)

    @abstractmethod
    def _canonicalise(self, value: str) -> str:
        """Canonicalise a non-empty value with surrounding white space already removed."""

    def reject(self, reason: RejectReason, detail: str) -> InvalidValueError:
        return InvalidValueError(self.name, reason, detail)


@dataclass
class BatchResult:
    """Outcome of canonicalising many raw values: the accepted ones and counts of the rest."""

    values: list[str] = field(default_factory=list)
    """Canonical forms of the accepted values, in input order."""
    indices: list[int] = field(default_factory=list)
    """Input position of each accepted value (parallel to ``values``)."""
    rejects: Counter[RejectReason] = field(default_factory=Counter)
    """How many values were refused, by reason."""

    @property
    def rejected(self) -> int:
        return sum(self.rejects.values())


def canonicalise_batch(kind: Kind, values: Iterable[str]) -> BatchResult:
    """Canonicalise ``values``; a bad value is counted by reason and never aborts the batch."""
    result = BatchResult()
    canonicalise = kind.canonicalise
    for position, value in enumerate(values):
        try:
            canonical = canonicalise(value)
        except InvalidValueError as error:
            result.rejects[error.reason] += 1
            continue
        result.values.append(canonical)
        result.indices.append(position)
    return result
