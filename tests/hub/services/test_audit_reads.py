"""Reads are audited one way at every edge (gRPC, console, review CLI): ``record_read``; console
page views through it, sampled (``record_page_view``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from sigshare.hub.services import audit as audit_service
from sigshare.hub.services.audit import (
    MAX_TARGET_LENGTH,
    PAGE_VIEW_INTERVAL,
    record_page_view,
    record_read,
    verify_audit_log,
)
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


def test_page_views_are_sampled_one_entry_per_viewer_and_page_kind_per_interval(
    engine: Engine,
) -> None:
    later = NOW + PAGE_VIEW_INTERVAL
    views = [
        ("coord", "web.indicators", "email", NOW),  # the first view: an entry
        ("coord", "web.indicators", "phone", NOW + timedelta(minutes=3)),  # within: none
        ("coord", "web.indicators", "*", later - timedelta(microseconds=1)),  # still within
        ("coord", "web.campaigns", "*", NOW + timedelta(minutes=4)),  # another page kind
        ("admin", "web.indicators", "*", NOW + timedelta(minutes=5)),  # another viewer
        ("coord", "web.indicators", "ip", later),  # the interval is over: an entry
        ("coord", "web.indicators", "*", later + timedelta(minutes=9)),  # within the new one
    ]
    written = []
    for actor, action, target, moment in views:
        with session_scope(engine) as session:
            written.append(record_page_view(session, actor, action, target, moment))
    assert written == [True, False, False, True, True, True, False]
    with session_scope(engine) as session:
        entries = AuditRepository(session).search(limit=10)
        assert verify_audit_log(session).entries == 4
    assert [(e.actor, e.action, e.target, e.at) for e in reversed(entries)] == [
        ("coord", "web.indicators", "email", NOW),
        ("coord", "web.campaigns", "*", NOW + timedelta(minutes=4)),
        ("admin", "web.indicators", "*", NOW + timedelta(minutes=5)),
        ("coord", "web.indicators", "ip", later),
    ]


def test_other_entries_of_the_viewer_do_not_stand_for_a_page_view(engine: Engine) -> None:
    with session_scope(engine) as session:
        record_read(session, "coord", "review.indicators", None, NOW)
        AuditRepository(session).append("coord", "review.note", "indicator:x", {}, at=NOW)
        assert record_page_view(session, "coord", "web.indicators", None, NOW)


def test_a_page_view_looks_back_only_over_the_newest_entries(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_service, "PAGE_VIEW_LOOKBACK", 3)
    moment = NOW
    with session_scope(engine) as session:
        assert record_page_view(session, "coord", "web.indicators", None, moment)
        for number in range(2):  # the view is still among the newest three entries
            record_read(session, "admin", "review.history", f"indicator:{number}", moment)
        assert not record_page_view(session, "coord", "web.indicators", None, moment)
        record_read(session, "admin", "review.history", "indicator:2", moment)
        # Three newer entries push the view out of the window: a new entry, sooner than the
        # interval (never later).
        assert record_page_view(session, "coord", "web.indicators", None, moment)
        assert (
            AuditRepository(session).last_at(actor="coord", action="web.indicators", within=1)
            == moment
        )
        assert AuditRepository(session).last_at(actor="nobody", action="x", within=10) is None
