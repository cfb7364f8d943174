"""The coordinators' review workflow: status, assignee and notes of shared indicators and
campaigns, each change kept in the record's history and the audit log.

Statuses move new → triaged → confirmed | dismissed (:data:`REVIEW_TRANSITIONS`); a decision is
reopened by moving it back to triaged. A record may carry a note for members: the members
behind it (an indicator's reporters, a campaign's members) receive its status and that note with
their matches; a status change replaces it. A record is assigned to a coordinator or admin who is
not revoked (:func:`reviewers`), or to nobody. Listings and records hide the names of the members
behind an indicator unless the kind's policy reveals them (:class:`RevealPolicy`) and never
carry its token.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Generic, TypeVar

from sqlalchemy.orm import Session

from sigshare.hub.domain import (
    NAME_RULE,
    REVIEW_TRANSITIONS,
    Campaign,
    RecordType,
    ReviewEvent,
    ReviewEventKind,
    ReviewStatus,
    SharedIndicator,
    is_valid_name,
)
from sigshare.hub.errors import InvalidArgumentError, NotFoundError, PreconditionError
from sigshare.hub.listing import Page, RecordQuery
from sigshare.hub.services import campaigns as campaign_service
from sigshare.hub.services.principals import list_principals
from sigshare.hub.services.reveal import RevealPolicy
from sigshare.hub.services.web_sessions import CONSOLE_ROLES
from sigshare.hub.storage.audit import AuditRepository
from sigshare.hub.storage.campaigns import ClusterRepository
from sigshare.hub.storage.indicators import IndicatorRepository
from sigshare.hub.storage.principals import PrincipalRepository
from sigshare.hub.storage.reviews import RecordState, ReviewRepository

MAX_NOTE_LENGTH = 4000

R = TypeVar("R", SharedIndicator, Campaign)


def record_state(session: Session, record_id: str) -> RecordState | None:
    """The review state of the indicator or campaign with this id; ``None`` if there is none."""
    return ReviewRepository(session).record(record_id)


def _state(session: Session, record_id: str) -> RecordState:
    state = record_state(session, record_id)
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
    member_note: str | None = None,
    now: datetime,
) -> ReviewEvent:
    """Move a record to ``status`` if the workflow allows it from where it is.

    ``member_note`` becomes the record's note for members, which the members behind it receive
    with the new status in their next pull; without one the record has none from now on (a
    note for members belongs to the decision it came with).
    """
    state = _state(session, record_id)
    if status not in REVIEW_TRANSITIONS[state.status]:
        allowed = ", ".join(sorted(REVIEW_TRANSITIONS[state.status])) or "none"
        raise PreconditionError(
            f"{state.record_type.value} {record_id} is {state.status.value}; it can move to "
            f"{allowed}, not {status.value}"
        )
    note = _clean_note(note)
    member_note = _clean_note(member_note)
    repository = ReviewRepository(session)
    repository.move(state, to=status, member_note=member_note, at=now)
    event = repository.add_event(
        state,
        actor=actor,
        at=now,
        kind=ReviewEventKind.STATUS,
        from_status=state.status,
        to_status=status,
        assignee=state.assignee,
        note=note,
        member_note=member_note,
    )
    details: dict[str, object] = {
        "from": state.status.value,
        "to": status.value,
        "note": note is not None,
    }
    if member_note is not None:
        details["member_note"] = True
    _audit(session, actor, "review.status", state, details=details, now=now)
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
    """Give a record to a coordinator or admin who is not revoked (``None``: nobody); any
    other name is refused (:func:`_check_assignee`)."""
    if assignee is not None:
        _check_assignee(session, assignee)
    state = _state(session, record_id)
    note = _clean_note(note)
    repository = ReviewRepository(session)
    repository.assign(state, assignee=assignee, at=now)
    event = repository.add_event(
        state,
        actor=actor,
        at=now,
        kind=ReviewEventKind.ASSIGN,
        from_status=None,
        to_status=None,
        assignee=assignee,
        note=note,
    )
    _audit(session, actor, "review.assign", state, details={"assignee": assignee}, now=now)
    return event


def _check_assignee(session: Session, name: str) -> None:
    """:class:`InvalidArgumentError` unless ``name`` is one of :func:`reviewers`: records go
    to the people who review them, never to a member firm, a revoked principal or a typo."""
    if not is_valid_name(name):
        raise InvalidArgumentError(f"assignee {name!r} is not a valid name: {NAME_RULE}")
    principal = PrincipalRepository(session).get_by_name(name)
    if principal is None or principal.role not in CONSOLE_ROLES:
        problem = f"no coordinator or admin named {name!r}"
        if principal is not None:
            problem += f" ({name} is a {principal.role.value})"
    elif principal.revoked_at is not None:
        problem = f"{principal.role.value} {name!r} is revoked"
    else:
        return
    choices = ", ".join(reviewers(session)) or "none"
    raise InvalidArgumentError(f"{problem}: records are assigned to one of {choices}")


def add_note(
    session: Session,
    *,
    actor: str,
    record_id: str,
    note: str,
    for_members: bool = False,
    now: datetime,
) -> ReviewEvent:
    """Add a note to the record's history. ``for_members``: the note is for the members behind
    the record instead, who receive it with their next pull; it replaces the record's note for
    members."""
    cleaned = _clean_note(note)
    if cleaned is None:
        raise InvalidArgumentError("a note needs some text")
    state = _state(session, record_id)
    repository = ReviewRepository(session)
    if for_members:
        repository.set_member_note(state, member_note=cleaned, at=now)
    event = repository.add_event(
        state,
        actor=actor,
        at=now,
        kind=ReviewEventKind.NOTE,
        from_status=None,
        to_status=None,
        assignee=state.assignee,
        note=None if for_members else cleaned,
        member_note=cleaned if for_members else None,
    )
    details: dict[str, object] = {"for_members": True} if for_members else {}
    _audit(session, actor, "review.note", state, details=details, now=now)
    return event


def history(session: Session, record_id: str) -> tuple[RecordState, list[ReviewEvent]]:
    state = _state(session, record_id)
    return state, ReviewRepository(session).history(record_id)


@dataclass(frozen=True, slots=True)
class ReviewRecord(Generic[R]):
    """One shared indicator or campaign as a coordinator reviews it: the record, its review
    state and its history (oldest first)."""

    item: R
    state: RecordState
    events: list[ReviewEvent]
    revealed: bool
    """Whether the record's policy names the members behind it (campaign members are always
    named to coordinators)."""


def indicator(session: Session, record_id: str) -> ReviewRecord[SharedIndicator]:
    """The shared indicator with this id, without its token, its reporters named only where
    the kind's policy reveals members."""
    found = IndicatorRepository(session).indicator(record_id)
    if found is None:
        raise NotFoundError("shared indicator", record_id)
    reveal = RevealPolicy.current(session)
    item = replace(reveal.indicator(found), token=b"")
    state, events = history(session, record_id)
    return ReviewRecord(item, state, events, revealed=found.kind in reveal.kinds)


def campaign(session: Session, record_id: str) -> ReviewRecord[Campaign]:
    """The campaign with this id, active or not (an inactive one keeps its history)."""
    found = ClusterRepository(session).campaign(record_id)
    if found is None:
        raise NotFoundError("campaign", record_id)
    state, events = history(session, record_id)
    return ReviewRecord(found, state, events, revealed=True)


def reviewers(session: Session) -> list[str]:
    """The names records may be assigned to: coordinators and admins not revoked, by name."""
    return sorted(
        p.name for p in list_principals(session) if p.role in CONSOLE_ROLES and p.revoked_at is None
    )


def indicators(session: Session, query: RecordQuery) -> Page[SharedIndicator]:
    """A page of shared indicators for review: opaque ids, never tokens or member names
    unless the kind's policy reveals members."""
    page = ReviewRepository(session).indicators(query)
    reveal = RevealPolicy.current(session)
    return page.with_items([replace(reveal.indicator(i), token=b"") for i in page.items])


def campaigns(session: Session, query: RecordQuery, now: datetime | None = None) -> Page[Campaign]:
    """A page of active campaigns for review (members named: coordinators see which firms a
    campaign spans — the overlap they are there to act on).

    ``now``: bring the campaigns of the query's family (every family's without one) up to date
    at this moment first (:func:`campaigns.refresh`), as a reader arriving after new
    submissions must; ``None`` reads them as last derived (a caller paging through what it has
    just refreshed).
    """
    if now is not None:
        campaign_service.refresh(session, now, query.scope)
    return ReviewRepository(session).campaigns(query)


def status_counts(session: Session) -> dict[RecordType, dict[ReviewStatus, int]]:
    repository = ReviewRepository(session)
    return {record_type: repository.status_counts(record_type) for record_type in RecordType}
