"""Reads are audited one way at every edge (gRPC, console, review CLI): ``record_read``."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine

from sigshare.hub.services.audit import MAX_TARGET_LENGTH, record_read
from sigshare.hub.storage import session_scope
from sigshare.hub.storage.audit import AuditRepository

NOW = datetime(2026, 12, 3, tzinfo=UTC)


def test_a_read_is_one_entry_with_a_target_and_only_the_details_that_say_something(
    engine: Engine,
) -> None:
    with session_scope(engine) as session:
        record_read(session, "coord", "review.indicators", None, NOW)
        record_read(session, "coord", "review.campaigns", "", NOW)
        record_read(
            session,
            "coord",
            "web.indicators",
            "x" * 400,
            NOW,
            details={"status": "new", "kind": "", "page": None, "sort": "created"},
        )
    with session_scope(engine) as session:
        entries = AuditRepository(session).search(actor="coord", limit=10)
    by_action = {entry.action: entry for entry in entries}
    assert len(entries) == 3
    assert by_action["review.indicators"].target == "*"
    assert by_action["review.campaigns"].target == "*"
    assert by_action["review.indicators"].details == {}
    assert by_action["web.indicators"].target == "x" * MAX_TARGET_LENGTH
    assert by_action["web.indicators"].details == {"status": "new", "sort": "created"}
