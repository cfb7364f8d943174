"""Keyset paging of every listing, on SQLite and on PostgreSQL, and the page-token codec.

Walking a listing page by page forward, then back again from its last page, visits every
matching row exactly once and in the listing's order, for every sort key in both directions,
with ties in the sort column (broken by id, newest first) and NULLs (below every value). The
oracle is Python's ``sorted`` over the rows inserted. Page tokens decode only as this hub wrote
them: anything else, and a token of another listing, sort key or direction, is refused.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from sigshare.hub.domain import AuditEntry, RecordType, ReviewStatus
from sigshare.hub.errors import InvalidArgumentError
from sigshare.hub.listing import (
    AUDIT_LISTING,
    AUDIT_SORT,
    CURSOR_REFUSED,
    MAX_CURSOR_LENGTH,
    SORTS,
    AuditQuery,
    Cursor,
    Page,
    RecordQuery,
)
from sigshare.hub.storage import session_scope
from sigshare.hub.storage.audit import AuditRepository
from sigshare.hub.storage.models import CampaignRow, SharedIndicatorRow
from sigshare.hub.storage.reviews import ReviewRepository

T0 = datetime(2026, 5, 1, 8, 30, 0, 250000, tzinfo=UTC)
PAGE = 7
ROWS = 40
STATUSES = list(ReviewStatus)


def _token(fields: object) -> str:
    """A token spelled like the hub's, around any JSON text (for hostile contents)."""
    text = fields if isinstance(fields, str) else json.dumps(fields, separators=(",", ":"))
    return "c1." + base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


# ------------------------------------------------------------------------------------ codec


@pytest.mark.parametrize(
    "cursor",
    [
        Cursor("indicators", "created", True, 17, 17),
        Cursor("indicators", "last_seen", False, T0.isoformat(), 3, forward=False),
        Cursor("indicators", "last_seen", True, None, 2**63 - 1),
        Cursor("campaigns", "similarity", True, 0.1 + 0.2, 5),
        Cursor("campaigns", "status", False, "triaged", 9, forward=False),
        Cursor("campaigns", "volume", True, -(2**63), 1),
        Cursor(AUDIT_LISTING, AUDIT_SORT, True, 12, 12),
    ],
)
def test_a_cursor_survives_its_token(cursor: Cursor) -> None:
    token = cursor.encode()
    assert token.startswith("c1.")
    assert len(token) <= MAX_CURSOR_LENGTH
    assert Cursor.decode(token) == cursor


GOOD = ["indicators", "reporters", "desc", "next", 3, 41]


@pytest.mark.parametrize(
    "token",
    [
        "",
        "c1.",
        "c1",
        "p1.41",
        "p1.²",
        f"p1.{2**63}",
        "c2." + _token(GOOD).removeprefix("c1."),
        "C1." + _token(GOOD).removeprefix("c1."),
        _token(GOOD) + "=",  # padding: not how the hub spells it
        _token(GOOD) + "A",  # trailing junk
        _token(GOOD)[:-2],  # truncated
        _token(GOOD).replace("c1.", "c1. "),
        "c1." + "A" * MAX_CURSOR_LENGTH,
        "c1.!!!!",
        "c1.\u0661\u0662",  # Arabic-Indic digits
        _token('["indicators","reporters","desc","next",3,4²]'),  # unicode digit in the id
        _token('["indicators","reporters","desc","next",3,٤١]'),
        _token(["indicators", "reporters", "desc", "next", 3, 2**63]),  # id beyond 64 bits
        _token(["indicators", "reporters", "desc", "next", 3, 2**80]),
        _token(["indicators", "reporters", "desc", "next", 2**63, 41]),  # value beyond 64 bits
        _token(["indicators", "reporters", "desc", "next", 3, 0]),
        _token(["indicators", "reporters", "desc", "next", 3, -1]),
        _token(["indicators", "reporters", "desc", "next", 3, 41.0]),
        _token(["indicators", "reporters", "desc", "next", 3, True]),
        _token(["indicators", "reporters", "desc", "next", True, 41]),
        _token(["indicators", "reporters", "desc", "next", [3], 41]),
        _token('["indicators","reporters","desc","next",NaN,41]'),
        _token('["indicators","reporters","desc","next",Infinity,41]'),
        _token('["indicators","reporters","desc","next",1e400,41]'),
        _token('["indicators","reporters","desc","next",3.0e0,41]'),  # not canonical
        _token('[ "indicators","reporters","desc","next",3,41]'),
        _token('["indicators","reporters","desc","next",03,41]'),
        _token(["indicators", "reporters", "down", "next", 3, 41]),
        _token(["indicators", "reporters", "desc", "back", 3, 41]),
        _token(["indicators", "reporters", "desc", "next", 3]),
        _token(["indicators", "reporters", "desc", "next", 3, 41, 0]),
        _token({"listing": "indicators"}),
        _token(["Indicators", "reporters", "desc", "next", 3, 41]),
        _token(["indicators", "", "desc", "next", 3, 41]),
        _token('"c1"'),
        _token("null"),
        "c1." + base64.urlsafe_b64encode(b"\xff\xfe\x00").decode(),
    ],
)
def test_anything_the_hub_did_not_write_is_refused(token: str) -> None:
    with pytest.raises(InvalidArgumentError) as refused:
        Cursor.decode(token)
    assert str(refused.value) == CURSOR_REFUSED


def test_a_cursor_is_only_good_for_its_listing_sort_and_direction() -> None:
    token = Cursor("indicators", "reporters", True, 3, 41).encode()
    assert RecordQuery.parse(RecordType.INDICATOR, sort="reporters", cursor=token).cursor
    for other in (
        {"record_type": RecordType.INDICATOR, "sort": "reporters", "descending": False},
        {"record_type": RecordType.INDICATOR, "sort": "created"},
        {"record_type": RecordType.INDICATOR, "sort": "last_seen"},
        {"record_type": RecordType.CAMPAIGN, "sort": "status"},
    ):
        with pytest.raises(InvalidArgumentError, match=CURSOR_REFUSED):
            RecordQuery.parse(cursor=token, **other)
    with pytest.raises(InvalidArgumentError, match=CURSOR_REFUSED):
        AuditQuery.parse(cursor=token)
    audit = Cursor(AUDIT_LISTING, AUDIT_SORT, True, 9, 9).encode()
    assert AuditQuery.parse(cursor=audit).cursor == Cursor.decode(audit)
    with pytest.raises(InvalidArgumentError, match=CURSOR_REFUSED):
        RecordQuery.parse(RecordType.INDICATOR, cursor=audit)


def test_queries_check_what_they_are_given() -> None:
    query = RecordQuery.parse(
        RecordType.CAMPAIGN,
        scope=" prompt ",
        status="new",
        category="card-testing",
        assignee="alice",
        sort="volume",
        descending=False,
        size=20,
        cursor="",
    )
    assert query == RecordQuery(
        RecordType.CAMPAIGN,
        scope="prompt",
        status=ReviewStatus.NEW,
        category="card-testing",
        assignee="alice",
        sort="volume",
        descending=False,
        size=20,
    )
    for bad, message in [
        ({"scope": "Not a kind"}, "kind 'Not a kind' is not a valid name"),
        ({"assignee": "<b>"}, "assignee '<b>' is not a valid name"),
        ({"status": "bogus"}, "unknown status 'bogus'"),
        ({"category": "x" * 65}, "category filter must be 1-64 printable characters"),
        ({"sort": "volume"}, "cannot sort indicators by 'volume'"),
        ({"size": 0}, "page size must be between 1 and 1000"),
        ({"size": 1001}, "page size must be between 1 and 1000"),
    ]:
        with pytest.raises(InvalidArgumentError, match=message):
            RecordQuery.parse(RecordType.INDICATOR, **bad)
    with pytest.raises(InvalidArgumentError, match="actor filter"):
        AuditQuery.parse(actor="a\x00b")


# ------------------------------------------------------------------------------- the walks


def _walk(read: Callable[[str | None], Page[Any]], first: str | None = None) -> Iterator[Page[Any]]:
    """Every page from ``first`` on, following next cursors."""
    cursor = first
    while True:
        page = read(cursor)
        yield page
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def _check_walks(read: Callable[[str | None], Page[Any]], expected: list[Any]) -> None:
    """Forward from the first page, then backward from the last: each row exactly once, in
    order, every page placed where it lies and linked to its neighbours."""
    forward = list(_walk(read))
    assert [item for page in forward for item in page.items] == expected
    position = 1
    for page in forward:
        assert (page.total, page.first, page.last) == (
            len(expected),
            position,
            position + len(page.items) - 1,
        )
        assert len(page.items) == min(PAGE, len(expected) - position + 1)
        assert (page.previous_cursor is None) == (position == 1)
        position += len(page.items)
    backward = [forward[-1]]
    while backward[-1].previous_cursor is not None:
        backward.append(read(backward[-1].previous_cursor))
    assert [page.items for page in reversed(backward)] == [page.items for page in forward]
    assert [page.first for page in reversed(backward)] == [page.first for page in forward]
    # Paging forward again from a page reached backwards continues where it should.
    if len(backward) > 1:
        assert read(backward[1].next_cursor).items == forward[-1].items


def _ordered(rows: list[dict[str, Any]], key: str, descending: bool) -> list[str]:
    """The listing order: NULL below every value, ties newest (highest id) first."""
    present = [row for row in rows if row[key] is not None]
    missing = [row for row in rows if row[key] is None]
    by_id = sorted(present, key=lambda row: -row["id"])
    ordered = sorted(by_id, key=lambda row: row[key], reverse=descending)
    nulls = sorted(missing, key=lambda row: -row["id"])
    return [row["public_id"] for row in (ordered + nulls if descending else nulls + ordered)]


def _seed_indicators(engine: Engine) -> list[dict[str, Any]]:
    rows = []
    with session_scope(engine) as session:
        for i in range(ROWS):
            row = SharedIndicatorRow(
                public_id=secrets.token_hex(16),
                kind=("email", "ip", "phone")[i % 3],
                key_id="epoch-1",
                token=i.to_bytes(16, "big"),
                reporters=2 + i % 4,  # ties
                categories=json.dumps(["urgent"] if i % 5 == 0 else [f"cat{i % 2}"]),
                first_seen=None,
                last_seen=None if i % 6 == 0 else T0 + timedelta(hours=i % 7),  # ties and NULLs
                status=STATUSES[i % len(STATUSES)].value,
                assignee="alice" if i % 4 == 0 else None,
                created_at=T0,
                updated_at=T0,
            )
            session.add(row)
            session.flush()
            rows.append(
                {
                    "id": row.id,
                    "public_id": row.public_id,
                    "created": row.id,
                    "reporters": row.reporters,
                    "last_seen": row.last_seen,
                    "status": row.status,
                    "kind": row.kind,
                    "categories": json.loads(row.categories),
                    "assignee": row.assignee,
                }
            )
    return rows


def _seed_campaigns(engine: Engine) -> list[dict[str, Any]]:
    rows = []
    with session_scope(engine) as session:
        for i in range(ROWS):
            row = CampaignRow(
                public_id=secrets.token_hex(16),
                family="prompt" if i % 2 else "chat",
                members=2 + i % 3,
                similarity=(0.5, 0.1 + 0.2, 0.75)[i % 3],
                volume=10 * (i % 5),
                categories=json.dumps([f"t{i % 3}"]),
                status=STATUSES[i % len(STATUSES)].value,
                assignee=None,
                active=i % 9 != 4,  # inactive campaigns are never listed
                signature=b"",
                created_at=T0,
                updated_at=T0,
            )
            session.add(row)
            session.flush()
            if row.active:
                rows.append(
                    {
                        "id": row.id,
                        "public_id": row.public_id,
                        "created": row.id,
                        "members": row.members,
                        "volume": row.volume,
                        "similarity": row.similarity,
                        "status": row.status,
                        "family": row.family,
                    }
                )
    return rows


def _reader(engine: Engine, query: RecordQuery) -> Callable[[str | None], Page[str]]:
    """Reads ``query``'s page at a cursor token: the public ids on it."""

    def read(token: str | None) -> Page[str]:
        asked = replace(query, cursor=None if token is None else Cursor.decode(token))
        with session_scope(engine) as session:
            repository = ReviewRepository(session)
            if query.record_type is RecordType.INDICATOR:
                indicators = repository.indicators(asked)
                return indicators.with_items([item.id for item in indicators.items])
            campaigns = repository.campaigns(asked)
            return campaigns.with_items([item.id for item in campaigns.items])

    return read


@pytest.mark.parametrize("descending", [True, False], ids=["desc", "asc"])
@pytest.mark.parametrize("sort", SORTS[RecordType.INDICATOR])
def test_indicator_pages_visit_every_row_once_in_order(
    engine: Engine, sort: str, descending: bool
) -> None:
    rows = _seed_indicators(engine)
    query = RecordQuery(RecordType.INDICATOR, sort=sort, descending=descending, size=PAGE)
    _check_walks(_reader(engine, query), _ordered(rows, sort, descending))
    # Filters page the same way.
    urgent = [row for row in rows if "urgent" in row["categories"] and row["kind"] == "email"]
    filtered = replace(query, scope="email", category="urgent")
    _check_walks(_reader(engine, filtered), _ordered(urgent, sort, descending))


@pytest.mark.parametrize("descending", [True, False], ids=["desc", "asc"])
@pytest.mark.parametrize("sort", SORTS[RecordType.CAMPAIGN])
def test_campaign_pages_visit_every_active_row_once_in_order(
    engine: Engine, sort: str, descending: bool
) -> None:
    rows = _seed_campaigns(engine)
    query = RecordQuery(RecordType.CAMPAIGN, sort=sort, descending=descending, size=PAGE)
    _check_walks(_reader(engine, query), _ordered(rows, sort, descending))
    new = [row for row in rows if row["status"] == "new" and row["family"] == "prompt"]
    filtered = replace(query, scope="prompt", status=ReviewStatus.NEW)
    _check_walks(_reader(engine, filtered), _ordered(new, sort, descending))


def test_audit_pages_visit_every_entry_once_newest_first(engine: Engine) -> None:
    with session_scope(engine) as session:
        audit = AuditRepository(session)
        entries = [
            audit.append("bulk" if i % 3 else "other", "bulk.read", f"t{i}", {}, at=T0)
            for i in range(ROWS)
        ]

    def reader(actor: str | None) -> Callable[[str | None], Page[Any]]:
        def read(cursor: str | None) -> Page[AuditEntry]:
            query = AuditQuery.parse(actor=actor, size=PAGE, cursor=cursor)
            with session_scope(engine) as session:
                return AuditRepository(session).page(query)

        return read

    _check_walks(reader(None), entries[::-1])
    _check_walks(reader("bulk"), [e for e in entries if e.actor == "bulk"][::-1])


def test_a_page_past_the_end_is_empty_and_placed_after_every_row(engine: Engine) -> None:
    rows = _seed_indicators(engine)
    oldest = min(row["id"] for row in rows)
    beyond = Cursor("indicators", "created", True, oldest, oldest).encode()
    before = Cursor("indicators", "created", True, 2**62, 2**62, forward=False).encode()
    read = _reader(engine, RecordQuery(RecordType.INDICATOR, size=PAGE))
    past = read(beyond)
    assert (past.items, past.total, past.first, past.next_cursor, past.previous_cursor) == (
        [],
        ROWS,
        ROWS + 1,
        None,
        None,
    )
    ahead = read(before)
    assert (ahead.items, ahead.first, ahead.next_cursor) == ([], 1, None)


def test_a_cursor_with_a_sort_value_of_the_wrong_type_is_refused(engine: Engine) -> None:
    _seed_indicators(engine)
    for sort, value in [
        ("reporters", "3"),
        ("reporters", 3.0),
        ("reporters", None),  # not a nullable column
        ("last_seen", 3),
        ("last_seen", "yesterday"),
        ("last_seen", T0.replace(tzinfo=None).isoformat()),
        ("last_seen", T0.astimezone(UTC).isoformat().replace("+00:00", "Z")),
        ("status", 1),
        ("created", "1"),
    ]:
        token = Cursor("indicators", sort, True, value, 5).encode()
        read = _reader(engine, RecordQuery(RecordType.INDICATOR, sort=sort, size=PAGE))
        with pytest.raises(InvalidArgumentError, match=CURSOR_REFUSED):
            read(token)
