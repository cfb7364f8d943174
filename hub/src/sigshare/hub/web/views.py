"""What the templates are given: link helpers, display formats, submission health.

Nothing here touches the database; the route handlers (:mod:`.routes`) fetch through the
services and hand these plain values to the templates.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode

from sigshare.hub.domain import ReviewEvent, Submission
from sigshare.hub.services.coordinator_views import (
    DEFAULT_FLAG_FACTOR,
    REPLACEMENT_BURST,
    SubmissionFlag,
    SubmissionView,
)

MAX_NEXT_LENGTH = 2000


def href(path: str, query: Mapping[str, object], **changes: object) -> str:
    """``path`` with ``query`` updated by ``changes``; empty values are left out."""
    merged = {**query, **changes}
    pairs = [(key, str(value)) for key, value in merged.items() if value not in (None, "")]
    return f"{path}?{urlencode(pairs)}" if pairs else path


def safe_next(value: str | None) -> str:
    """A local path to return to after signing in; anything else (another site, ``//host``,
    a scheme, control characters) becomes ``/``."""
    if (
        not value
        or len(value) > MAX_NEXT_LENGTH
        or not value.startswith("/")
        or value.startswith(("//", "/\\"))
        or any(ord(c) < 33 or c == "\\" for c in value)
    ):
        return "/"
    return value


def when(moment: datetime | None) -> str:
    """Minutes-precision UTC: ``2026-11-27 04:23Z``; ``—`` when unknown."""
    if moment is None:
        return "—"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%MZ")


def number(value: float | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and not math.isfinite(value):
        return "∞"
    return f"{value:,.0f}" if isinstance(value, float) else f"{value:,}"


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def rate(value: float | None) -> str:
    """A false-positive rate: ``1.2e-04``."""
    return "—" if value is None else f"{value:.1e}"


def similarity(value: float) -> str:
    return f"{value:.2f}"


FLAG_LABELS = {
    SubmissionFlag.DECLARED_COUNT_JUMP.value: "count jumped",
    SubmissionFlag.QUERY_VOLUME_JUMP.value: "queries jumped",
    SubmissionFlag.FREQUENT_REPLACEMENT.value: "replaced often",
}
FLAG_HELP = {
    SubmissionFlag.DECLARED_COUNT_JUMP.value: (
        f"declared count over {DEFAULT_FLAG_FACTOR:g}× the member's previous submission: "
        "a member claiming values it does not hold to probe for them looks like this"
    ),
    SubmissionFlag.QUERY_VOLUME_JUMP.value: (
        f"distinct tokens asked about over {DEFAULT_FLAG_FACTOR:g}× the previous submission's"
    ),
    SubmissionFlag.FREQUENT_REPLACEMENT.value: (
        f"at least the member's {REPLACEMENT_BURST}th filter of this kind within 24 hours: "
        "cycling claimed values through a filter to probe for them looks like this"
    ),
}


@dataclass(frozen=True, slots=True)
class SubmissionHealth:
    """One active submission as the overview shows it, with its filter's health figures."""

    member: str
    kind: str
    submission: Submission
    fill: float | None
    expected_fill: float | None
    fpr_at_fill: float | None
    target_fpr: float | None
    flags: tuple[str, ...] = ()
    """Probing flags (``coordinator_views.SubmissionFlag`` values)."""

    @property
    def healthy(self) -> bool | None:
        """Bloom filters: whether the FPR at the observed fill is within twice the target (the
        hub's acceptance bound); ``None`` for prompt clusters."""
        if self.fpr_at_fill is None or self.target_fpr is None:
            return None
        return self.fpr_at_fill <= 2 * self.target_fpr


def submission_health(view: SubmissionView) -> SubmissionHealth:
    """Fill, expected fill and FPR at fill, computed as the review API reports them."""
    submission, params = view.submission, view.params
    kind = submission.family_kind
    if params is None or submission.set_bits is None:
        return SubmissionHealth(view.member, kind, submission, None, None, None, None, view.flags)
    bloom = params.bloom_params()
    fill = submission.set_bits / bloom.m
    return SubmissionHealth(
        member=view.member,
        kind=kind,
        submission=submission,
        fill=fill,
        expected_fill=bloom.expected_fill(submission.declared_count),
        fpr_at_fill=bloom.fpr_at_fill(fill),
        target_fpr=params.target_fpr,
        flags=view.flags,
    )


def history_steps(events: Sequence[ReviewEvent]) -> list[ReviewEvent]:
    """The record's review events as the console lists them: newest first."""
    return list(reversed(events))
