"""The audit log: recording reads, verifying its hash chain and paging through its entries.

Reads through the gRPC API and the review CLI are each an entry. Console page views are
sampled (:func:`record_page_view`): a coordinator paging through a listing would otherwise
bury every review action under page views. Review actions, exports and sign-ins are always an
entry each; their services append them directly.

Verification reports the head entry's hash as well as the count: deleting the newest entries
leaves a shorter chain that still verifies, so operators anchor the head hash somewhere the hub
cannot rewrite (a ticket, a signed e-mail) and compare it on the next check.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy.orm import Session

from sigshare.hub.domain import AuditEntry
from sigshare.hub.listing import AuditQuery, Page
from sigshare.hub.storage.audit import AuditRepository

MAX_TARGET_LENGTH = 255
PAGE_VIEW_INTERVAL: Final = timedelta(minutes=10)
"""A console page view is recorded when the viewer has no entry of that page kind this recent."""
PAGE_VIEW_LOOKBACK: Final = 10_000
"""How many of the newest audit entries are searched for the viewer's last one of a page kind:
a bounded read per page view on any log size. On a log growing faster than this per
:data:`PAGE_VIEW_INTERVAL`, a view may be recorded sooner than the interval (never later)."""


def record_read(
    session: Session,
    actor: str,
    action: str,
    target: str | None,
    now: datetime,
    *,
    details: Mapping[str, Any] | None = None,
) -> None:
    """Record that ``actor`` read something: every edge (gRPC, console, CLI) audits reads the
    same way. ``target`` empty or ``None`` is ``*`` (everything); empty details are left out."""
    clean = {key: value for key, value in (details or {}).items() if value not in (None, "")}
    AuditRepository(session).append(
        actor, action, (target or "*")[:MAX_TARGET_LENGTH], clean, at=now
    )


def record_page_view(
    session: Session,
    actor: str,
    action: str,
    target: str | None,
    now: datetime,
    *,
    details: Mapping[str, Any] | None = None,
) -> bool:
    """Record a console page view, sampled: one entry per viewer and page kind (``action``)
    per :data:`PAGE_VIEW_INTERVAL`. Whether an entry was written.

    The view is recorded as a read (:func:`record_read`, its own target and details) unless
    ``actor`` has an ``action`` entry less than the interval old; views within that interval
    are then not recorded. Nothing is ever updated, so the chain stays append-only; and as the
    decision reads the log itself, it holds across restarts and console replicas (two replicas
    serving the same viewer at the same instant may both write one).
    """
    last = AuditRepository(session).last_at(actor=actor, action=action, within=PAGE_VIEW_LOOKBACK)
    if last is not None and now - last < PAGE_VIEW_INTERVAL:
        return False
    record_read(session, actor, action, target, now, details=details)
    return True


@dataclass(frozen=True, slots=True)
class AuditVerification:
    entries: int
    """Entries whose hashes and links were checked."""
    head: AuditEntry | None
    """The newest entry when the check began (``None`` for an empty log); it is part of the
    verified chain, so its ``entry_hash`` commits to every entry before it."""


def verify_audit_log(session: Session) -> AuditVerification:
    """Check the whole chain; :class:`AuditChainError` names the first broken entry."""
    repository = AuditRepository(session)
    # Head first: an entry appended concurrently lies beyond it, so the head reported is
    # always one the walk below has checked.
    newest = repository.search(limit=1)
    checked = repository.verify()
    return AuditVerification(entries=checked, head=newest[0] if newest else None)


def search_audit_log(session: Session, query: AuditQuery) -> Page[AuditEntry]:
    """A page of entries, newest first, optionally only one actor's or one action's."""
    return AuditRepository(session).page(query)
