"""The coordinators' review workflow: status, assignee and notes of shared indicators and
campaigns, each change kept in the record's history and the audit log.

Statuses move new → triaged → confirmed | dismissed (:data:`REVIEW_TRANSITIONS`); a decision is
reopened by moving it back to triaged. Listings hide the names of the members behind an
indicator or campaign unless the kind's or family's policy reveals them.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from sqlalchemy.orm import Session

from sigshare.hub.domain import (
    NAME_RULE,
    REVIEW_TRANSITIONS,
    Campaign,
    RecordType,
    ReviewEvent,
    ReviewStatus,
    SharedIndicator,
    is_valid_name,
)
from sigshare.hub.errors import InvalidArgumentError, NotFoundError, PreconditionError
from sigshare.hub.services.reveal import RevealPolicy
from sigshare.hub.storage.repositories import AuditRepository
from sigshare.hub.storage.review import (
    CampaignSort,
    IndicatorSort,
    Page,
    RecordState,
    ReviewRepository,
)

MAX_NOTE_LENGTH = 4000


def _state(session: Session, record_id: str) -> RecordState:
    state = ReviewRepository(session).record(record_id)
    if state is None:
        raise NotFoundError("indicator or campaign", record_id)
    return state


def _clean_note(note: str | None) -> str | None:
    if note is None:
        return None
    note = note.strip()
    if len(note) > MAX_NOTE_LENGTH:
        raise InvalidArgumentError(f"notes are at most {MAX_NOTE_LENGTH} characters")
    if any(ord(c) < 32 and c not in "\n\t" for c in note):
        raise InvalidArgumentError("notes may not contain control characters")
    return note or None


def _audit(
    session: Session,
    actor: str,
    action: str,
    state: RecordState,
    *,
    details: dict[str, object],
    now: datetime,
) -> None:
    AuditRepository(session).append(
        actor, action, f"{state.record_type.value}:{state.record_id}", details, at=now
    )


def set_status(
    session: Session,
    *,
    actor: str,
    record_id: str,
    status: ReviewStatus,
    note: str | None = None,
    now: datetime,
) -> ReviewEvent:
    """Move a record to ``status`` if the workflow allows it from where it is."""
    state = _state(session, record_id)
    if status not in REVIEW_TRANSITIONS[state.status]:
        allowed = ", ".join(sorted(REVIEW_TRANSITIONS[state.status])) or "none"
        raise PreconditionError(
            f"{state.record_type.value} {record_id} is {state.status.value}; it can move to "
            f"{allowed}, not {status.value}"
        )
    note = _clean_note(note)
    repository = ReviewRepository(session)
    repository.move(state, to=status, at=now)
    event = repository.add_event(
        state,
        actor=actor,
        at=now,
        from_status=state.status,
        to_status=status,
        assignee=state.assignee,
        note=note,
    )
    _audit(
        session,
        actor,
        "review.status",
        state,
        details={"from": state.status.value, "to": status.value, "note": note is not None},
        now=now,
    )
    return event


def assign(
    session: Session,
    *,
    actor: str,
    record_id: str,
    assignee: str | None,
    note: str | None = None,
    now: datetime,
) -> ReviewEvent:
    """Give a record to a coordinator (``None``: nobody)."""
    if assignee is not None and not is_valid_name(assignee):
        raise InvalidArgumentError(f"assignee {assignee!r} is not a valid name: {NAME_RULE}")
    state = _state(session, record_id)
    note = _clean_note(note)
    repository = ReviewRepository(session)
    repository.assign(state, assignee=assignee, at=now)
    event = repository.add_event(
        state,
        actor=actor,
        at=now,
        from_status=None,
        to_status=None,
        assignee=assignee,
        note=note,
    )
    _audit(session, actor, "review.assign", state, details={"assignee": assignee}, now=now)
    return event


def add_note(
    session: Session, *, actor: str, record_id: str, note: str, now: datetime
) -> ReviewEvent:
    cleaned = _clean_note(note)
    if cleaned is None:
        raise InvalidArgumentError("a note needs some text")
    state = _state(session, record_id)
    event = ReviewRepository(session).add_event(
        state,
        actor=actor,
        at=now,
        from_status=None,
        to_status=None,
        assignee=state.assignee,
        note=cleaned,
    )
    _audit(session, actor, "review.note", state, details={}, now=now)
    return event


def history(session: Session, record_id: str) -> tuple[RecordState, list[ReviewEvent]]:
    state = _state(session, record_id)
    return state, ReviewRepository(session).history(record_id)


def indicators(
    session: Session,
    *,
    kind: str | None = None,
    status: ReviewStatus | None = None,
    category: str | None = None,
    assignee: str | None = None,
    sort: IndicatorSort = "created",
    descending: bool = True,
    offset: int = 0,
    limit: int = 50,
) -> Page[SharedIndicator]:
    """A page of shared indicators for review: opaque ids, never tokens or member names
    unless the kind's policy reveals members."""
    page = ReviewRepository(session).indicators(
        kind=kind,
        status=status,
        category=category,
        assignee=assignee,
        sort=sort,
        descending=descending,
        offset=offset,
        limit=limit,
    )
    reveal = RevealPolicy.current(session)
    items = [replace(reveal.indicator(i), token=b"") for i in page.items]
    return Page(items, page.total, page.offset, page.limit)


def campaigns(
    session: Session,
    *,
    family: str | None = None,
    status: ReviewStatus | None = None,
    category: str | None = None,
    assignee: str | None = None,
    sort: CampaignSort = "created",
    descending: bool = True,
    offset: int = 0,
    limit: int = 50,
) -> Page[Campaign]:
    """A page of active campaigns for review (members named: coordinators see which firms a
    campaign spans — the overlap they are there to act on)."""
    return ReviewRepository(session).campaigns(
        family=family,
        status=status,
        category=category,
        assignee=assignee,
        sort=sort,
        descending=descending,
        offset=offset,
        limit=limit,
    )


def status_counts(session: Session) -> dict[RecordType, dict[ReviewStatus, int]]:
    repository = ReviewRepository(session)
    return {record_type: repository.status_counts(record_type) for record_type in RecordType}
