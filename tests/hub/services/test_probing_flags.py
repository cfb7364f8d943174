"""Probing flags on coordinators' submission listings, decided from plain submission records."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from sigshare.hub.domain import Submission, SubmissionStatus
from sigshare.hub.services.coordinator_views import REPLACEMENT_BURST, SubmissionFlag, probing_flags

T0 = datetime(2026, 12, 1, tzinfo=UTC)
BASE = Submission(
    id=1,
    member_id=1,
    family_kind="email",
    key_id="k1",
    params_digest=bytes(32),
    content_sha256=bytes(32),
    declared_count=1000,
    byte_size=100,
    set_bits=10,
    status=SubmissionStatus.ACTIVE,
    tokens_asked=1000,
    created_at=T0,
    superseded_at=None,
    expires_at=T0,
)


@pytest.mark.parametrize(
    ("declared", "asked", "expected"),
    [
        (5000, 5000, ()),  # exactly 5×: not more than the factor
        (5001, 1000, (SubmissionFlag.DECLARED_COUNT_JUMP,)),
        (1000, 5001, (SubmissionFlag.QUERY_VOLUME_JUMP,)),
        (5001, 5001, (SubmissionFlag.DECLARED_COUNT_JUMP, SubmissionFlag.QUERY_VOLUME_JUMP)),
        (10, 10, ()),  # shrinking is never a flag
    ],
)
def test_jumps_over_the_previous_submission_are_flagged(
    declared: int, asked: int, expected: tuple[SubmissionFlag, ...]
) -> None:
    current = replace(BASE, id=2, declared_count=declared, tokens_asked=asked)
    assert probing_flags(current, BASE) == tuple(flag.value for flag in expected)


def test_a_first_submission_or_a_silent_predecessor_is_not_compared() -> None:
    big = replace(BASE, id=2, declared_count=10**6, tokens_asked=10**6)
    assert probing_flags(big, None) == ()
    assert probing_flags(big, replace(BASE, tokens_asked=0)) == (
        SubmissionFlag.DECLARED_COUNT_JUMP.value,
    )


def test_frequent_replacement_is_flagged_from_the_burst_size_on() -> None:
    assert REPLACEMENT_BURST == 4
    assert probing_flags(BASE, BASE, recent=REPLACEMENT_BURST - 1) == ()
    assert probing_flags(BASE, BASE, recent=REPLACEMENT_BURST) == (
        SubmissionFlag.FREQUENT_REPLACEMENT.value,
    )
    assert probing_flags(BASE, None, recent=REPLACEMENT_BURST + 20) == (
        SubmissionFlag.FREQUENT_REPLACEMENT.value,
    )


def test_a_custom_factor_moves_the_threshold() -> None:
    current = replace(BASE, id=2, declared_count=2001)
    assert probing_flags(current, BASE, 2.0) == (SubmissionFlag.DECLARED_COUNT_JUMP.value,)
    assert probing_flags(current, BASE, 3.0) == ()
