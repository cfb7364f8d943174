"""The coordinators' web console, server side: every route and permission through FastAPI's
test client over a migrated SQLite file.

Two kinds of data: the small forum of ``tests.support.review_seed`` (members' real Bloom filters
and prompt clusters of known raw values, confirmed through the services) for the overview, the
heatmap, the review workflow and the leak check; and a bulk of 120 shared indicators and 30
campaigns with known attributes, inserted through the repositories, for exact filter, sort and
page checks. The console's clock is injected so session expiry is tested without waiting.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from sigshare.client.exit_codes import ExitCode
from sigshare.hub.domain import AuditEntry, RecordType, ReviewStatus, Role
from sigshare.hub.listing import Cursor, RecordQuery
from sigshare.hub.services import coordinator_views, parameters, principals, reviews, web_sessions
from sigshare.hub.services.audit import PAGE_VIEW_INTERVAL, verify_audit_log
from sigshare.hub.services.campaigns import refresh as refresh_campaigns
from sigshare.hub.services.exports import TLP_LEVELS, TLP_MARKING_IDS
from sigshare.hub.storage import session_scope
from sigshare.hub.storage.audit import AuditRepository
from sigshare.hub.storage.campaigns import CampaignDraft, ClusterRepository
from sigshare.hub.storage.database import DATABASE_URL_ENV
from sigshare.hub.storage.indicators import IndicatorRepository, TokenConfirmation
from sigshare.hub.storage.principals import PrincipalRepository
from sigshare.hub.storage.reviews import ReviewRepository
from sigshare.hub.web import create_app
from sigshare.hub.web.heatmap import figure
from sigshare.hub.web.security import CONTENT_SECURITY_POLICY, SECURITY_HEADERS
from tests.support.cli import invoke_hub
from tests.support.hub import (
    ADMIN,
    COORDINATOR,
    EMAIL,
    KEY_ID,
    MEMBERS,
    PROMPT,
    provision,
    set_email_policy,
)
from tests.support.processes import hub_command_serving
from tests.support.review_seed import (
    PROBE_FLAGS,
    PROBES,
    SEEDED_AT,
    SeededForum,
    expected_campaign_seen,
    seed_forum,
    seed_probing,
)

NOW = SEEDED_AT + timedelta(hours=2)
"""The console's clock: shortly after the seed, well inside the submissions' retention."""
SESSION_COOKIE = "sigshare_session"
LOGIN_COOKIE = "sigshare_login"
REFUSAL = "unknown credential or not a coordinator"
CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')
INDICATOR_LINK = re.compile(r'href="/indicators/([0-9a-f]{32})"')
CAMPAIGN_LINK = re.compile(r'href="/campaigns/([0-9a-f]{32})"')
HUB = Path(sys.executable).with_name("sigshare-hub")


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Console:
    """A test client of the console over a provisioned hub, with helpers to sign in and post."""

    engine: Engine
    client: TestClient
    clock: Clock
    credentials: dict[str, str]

    def sign_in(self, name: str = COORDINATOR, next_path: str | None = None) -> httpx.Response:
        form = self.client.get("/login", params={"next": next_path} if next_path else None)
        assert form.status_code == 200, form.text
        response: httpx.Response = self.client.post(
            "/login",
            data={
                "credential": self.credentials[name],
                "csrf": self.client.cookies[LOGIN_COOKIE],
                "next": next_path or "/",
            },
            follow_redirects=False,
        )
        return response

    def csrf(self) -> str:
        match = CSRF_FIELD.search(self.client.get("/export").text)
        assert match is not None
        return match.group(1)

    def post(
        self, path: str, data: dict[str, str], *, csrf: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        """POST a form with the session's CSRF token (or ``csrf``), not following redirects."""
        form = {"csrf": self.csrf() if csrf is None else csrf, **data}
        response: httpx.Response = self.client.post(
            path, data=form, follow_redirects=False, **kwargs
        )
        return response

    def audit(self, *, actor: str | None = None, action: str | None = None) -> list[AuditEntry]:
        with session_scope(self.engine) as session:
            return AuditRepository(session).search(actor=actor, action=action, limit=1000)

    def status_of(self, record_id: str) -> tuple[ReviewStatus, str | None, int]:
        """Status, assignee and number of history events of a record."""
        with session_scope(self.engine) as session:
            state, events = reviews.history(session, record_id)
        return state.status, state.assignee, len(events)


def _console(engine: Engine, **options: Any) -> Console:
    credentials = provision(engine, now=SEEDED_AT - timedelta(days=1))
    clock = Clock(NOW)
    app = create_app(engine, secure_cookies=False, clock=clock, **options)
    return Console(engine, TestClient(app), clock, credentials)


@pytest.fixture
def console(sqlite_engine: Engine) -> Console:
    """A provisioned hub (admin, coordinator, members m1-m4; email and prompt) and no data."""
    return _console(sqlite_engine)


@pytest.fixture
def signed_in(console: Console) -> Console:
    assert console.sign_in().status_code == 303
    return console


@pytest.fixture
def forum(signed_in: Console) -> SeededForum:
    return seed_forum(signed_in.engine, provisioned=True)


def first_indicator(console: Console) -> str:
    with session_scope(console.engine) as session:
        return reviews.indicators(session, RecordQuery(RecordType.INDICATOR, size=1)).items[0].id


def first_campaign(console: Console) -> str:
    with session_scope(console.engine) as session:
        return reviews.campaigns(session, RecordQuery(RecordType.CAMPAIGN, size=1)).items[0].id


# ---------------------------------------------------------------------------------- bulk data


@dataclass(frozen=True)
class BulkIndicator:
    index: int
    """Creation order (the row id's order)."""
    id: str
    kind: str
    reporters: int
    categories: tuple[str, ...]
    last_seen: datetime
    status: ReviewStatus
    assignee: str | None


BULK_BASE = datetime(2026, 6, 1, tzinfo=UTC)


def seed_indicators(engine: Engine, count: int = 120) -> list[BulkIndicator]:
    """``count`` shared indicators of two kinds with known reporters, categories, dates,
    statuses and assignees (statuses and assignees set through the review workflow)."""
    with session_scope(engine) as session:
        parameters.set_kind_parameters(
            session,
            actor="test",
            kind="ip",
            key_id=KEY_ID,
            capacity=1000,
            forum_fpr=0.01,
            now=SEEDED_AT,
        )
        member_ids = {p.name: p.id for p in PrincipalRepository(session).list()}
        repository = IndicatorRepository(session)
        tokens = []
        for i in range(count):
            token = hashlib.sha256(f"bulk token {i}".encode()).digest()[:16]
            tokens.append(token)
            kind = "ip" if i % 4 == 0 else EMAIL
            moment = BULK_BASE + timedelta(seconds=i)
            for holder, member in enumerate(MEMBERS[: 2 + i % 3]):
                category = "urgent" if holder == 0 and i % 5 == 0 else f"cat{i % 4}"
                repository.confirm(
                    kind=kind,
                    key_id=KEY_ID,
                    member_id=member_ids[member],
                    confirmations=[
                        TokenConfirmation(
                            token=token,
                            category=category,
                            first_seen=BULK_BASE - timedelta(days=1),
                            last_seen=BULK_BASE + timedelta(hours=(i * 37) % count),
                        )
                    ],
                    at=moment,
                )
            repository.refresh_shared(kind=kind, key_id=KEY_ID, tokens=[token], quorum=2, at=moment)
        listing = RecordQuery(RecordType.INDICATOR, size=1000)
        ids = {r.token: r.id for r in ReviewRepository(session).indicators(listing).items}
        records = []
        for i, token in enumerate(tokens):
            status = ReviewStatus.NEW
            if i % 3 == 1:
                status = ReviewStatus.TRIAGED
            elif i % 6 == 2:
                status = ReviewStatus.DISMISSED
            steps = {
                ReviewStatus.NEW: [],
                ReviewStatus.TRIAGED: [ReviewStatus.TRIAGED],
                ReviewStatus.DISMISSED: [ReviewStatus.DISMISSED],
            }[status]
            if i % 9 == 4:
                steps.append(ReviewStatus.CONFIRMED)
                status = ReviewStatus.CONFIRMED
            for step in steps:
                reviews.set_status(
                    session, actor="test", record_id=ids[token], status=step, now=SEEDED_AT
                )
            assignee = ADMIN if i % 7 == 0 else None
            if assignee:
                reviews.assign(
                    session, actor="test", record_id=ids[token], assignee=assignee, now=SEEDED_AT
                )
            categories = {f"cat{i % 4}"} | ({"urgent"} if i % 5 == 0 else set())
            records.append(
                BulkIndicator(
                    index=i,
                    id=ids[token],
                    kind="ip" if i % 4 == 0 else EMAIL,
                    reporters=2 + i % 3,
                    categories=tuple(sorted(categories)),
                    last_seen=BULK_BASE + timedelta(hours=(i * 37) % count),
                    status=status,
                    assignee=assignee,
                )
            )
    return records


def ordered(records: list[Any], key: Callable[[Any], Any], *, descending: bool) -> list[Any]:
    """The listings' order: by ``key``, ties broken by newest first."""
    if descending:
        return sorted(records, key=lambda r: (key(r), r.index), reverse=True)
    return sorted(records, key=lambda r: (key(r), -r.index))


@dataclass(frozen=True)
class BulkCampaign:
    index: int
    id: str
    members: int
    similarity: float
    volume: int
    categories: tuple[str, ...]


def seed_campaigns(engine: Engine, count: int = 30) -> list[BulkCampaign]:
    """``count`` active campaigns of the ``prompt`` family with known figures. The family's
    campaigns are brought up to date first, so the console's own refresh leaves these alone."""
    with session_scope(engine) as session:
        refresh_campaigns(session, NOW)
        member_ids = [p.id for p in PrincipalRepository(session).list() if p.role is Role.MEMBER]
        drafts = [
            CampaignDraft(
                members=2 + i % 3,
                similarity=0.5 + ((i * 7) % count) / 100,
                volume=10 * ((i * 11) % count) + 5,
                categories=(f"family{i % 2}",),
                clusters=tuple((member_ids[m], f"{i:016x}{m:016x}", 0.9) for m in range(2 + i % 3)),
                signature=np.zeros(128, dtype=np.uint32),
            )
            for i in range(count)
        ]
        ClusterRepository(session).replace_campaigns(PROMPT, drafts, {}, NOW)
        stored = reviews.campaigns(
            session, RecordQuery(RecordType.CAMPAIGN, descending=False, size=500)
        ).items
    return [
        BulkCampaign(i, c.id, d.members, d.similarity, d.volume, d.categories)
        for i, (c, d) in enumerate(zip(stored, drafts, strict=True))
    ]


def ids_on(page: httpx.Response, link: re.Pattern[str] = INDICATOR_LINK) -> list[str]:
    assert page.status_code == 200, page.text
    return link.findall(page.text)


def linked(page: httpx.Response, rel: str) -> str | None:
    """The target of the page's ``rel`` link (``next``, ``prev``), if it has one."""
    found = re.search(rf'href="([^"]+)" rel="{rel}"', page.text)
    return None if found is None else html.unescape(found.group(1))


def page_at(client: httpx.Client, path: str, number: int) -> httpx.Response:
    """Page ``number`` of the listing at ``path``, reached by following Next links."""
    response = client.get(path)
    for _ in range(number - 1):
        target = linked(response, "next")
        assert target is not None, f"{path} has no page {number}"
        response = client.get(target)
    return response


# ---------------------------------------------------------------------------------- sign-in

GET_PAGES = [
    "/",
    "/overlaps",
    "/overlaps?kind=email",
    "/indicators",
    "/indicators?status=new&sort=reporters",
    f"/indicators/{'0' * 32}",
    "/campaigns",
    f"/campaigns/{'0' * 32}",
    "/audit",
    "/export",
    "/export/csv",
    "/export/stix",
]


@pytest.mark.parametrize("path", GET_PAGES)
def test_unauthenticated_pages_redirect_to_sign_in(console: Console, path: str) -> None:
    response = console.client.get(path, follow_redirects=False)
    assert response.status_code == 303
    location = response.headers["location"]
    if path == "/":
        assert location == "/login"
    else:
        assert location == f"/login?next={quote(path, safe='')}"
    assert console.audit(action="web.overview") == []


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("/records/{id}/status", {"status": "triaged"}),
        ("/records/{id}/assign", {"assignee": "admin"}),
        ("/records/{id}/note", {"note": "hello"}),
        ("/logout", {}),
    ],
)
def test_unauthenticated_posts_redirect_and_change_nothing(
    console: Console, path: str, data: dict[str, str]
) -> None:
    seed_indicators(console.engine, 3)
    record = first_indicator(console)
    before = console.status_of(record)
    response = console.client.post(
        path.format(id=record), data={"csrf": "x", **data}, follow_redirects=False
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/login"
    assert console.status_of(record) == before


@pytest.mark.parametrize("name", [COORDINATOR, ADMIN])
def test_coordinators_and_admins_sign_in(console: Console, name: str) -> None:
    response = console.sign_in(name)
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/" in cookie
    page = console.client.get("/")
    assert page.status_code == 200
    assert f'<span class="who" title="signed in">{name}<' in page.text
    [entry] = console.audit(action="web.sign_in")
    assert (entry.actor, entry.target) == (name, name)
    assert set(entry.details) == {"client", "hours", "role"}


@pytest.mark.parametrize(
    "credential",
    [
        "member",
        "sgs1_0123456789abcdef_" + "A" * 43,
        "not a credential at all",
        "",
    ],
)
def test_members_and_wrong_credentials_get_the_same_refusal(
    console: Console, credential: str
) -> None:
    presented = console.credentials["m1"] if credential == "member" else credential
    console.client.get("/login")
    response = console.client.post(
        "/login",
        data={"credential": presented, "csrf": console.client.cookies[LOGIN_COOKIE]},
        follow_redirects=False,
    )
    assert response.status_code == 401
    assert REFUSAL in response.text
    assert SESSION_COOKIE not in response.headers.get("set-cookie", "")
    assert console.client.get("/", follow_redirects=False).status_code == 303
    [entry] = console.audit(action="auth.refused")
    assert entry.actor == "web"
    assert entry.target == "source:testclient"
    assert entry.details == {
        "channel": "web",
        "source": "testclient",
        "kind": "first",
        "refusals": 1,
        "seconds": 0.0,
        "limited": False,
        "summary": "1 refusals from testclient in the last 0 s",
    }
    everything = json.dumps([vars_of(e) for e in console.audit()])
    if presented:
        assert presented not in everything
        assert presented.split("_", 2)[-1] not in everything  # the whole secret part


def vars_of(entry: AuditEntry) -> dict[str, Any]:
    return {"actor": entry.actor, "target": entry.target, "details": entry.details}


def test_sign_in_needs_the_forms_token(console: Console) -> None:
    credential = console.credentials[COORDINATOR]
    no_cookie = console.client.post(
        "/login", data={"credential": credential, "csrf": "guess"}, follow_redirects=False
    )
    assert no_cookie.status_code == 403
    console.client.get("/login")
    wrong = console.client.post(
        "/login", data={"credential": credential, "csrf": "guess"}, follow_redirects=False
    )
    assert wrong.status_code == 403
    cross_site = console.client.post(
        "/login",
        data={"credential": credential, "csrf": console.client.cookies[LOGIN_COOKIE]},
        headers={"Origin": "https://evil.example"},
        follow_redirects=False,
    )
    assert cross_site.status_code == 403
    assert console.audit(action="web.sign_in") == []
    assert console.client.get("/", follow_redirects=False).status_code == 303


def test_sign_in_returns_to_the_page_asked_for_but_only_on_this_site(console: Console) -> None:
    asked = console.client.get("/indicators?status=new", follow_redirects=False)
    assert asked.headers["location"] == "/login?next=%2Findicators%3Fstatus%3Dnew"
    back = console.sign_in(next_path="/indicators?status=new")
    assert back.headers["location"] == "/indicators?status=new"
    for hostile in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "x"):
        console.client.cookies.clear()
        assert console.sign_in(next_path=hostile).headers["location"] == "/"


def test_a_signed_in_visit_to_the_sign_in_form_goes_home(signed_in: Console) -> None:
    response = signed_in.client.get("/login", follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (303, "/")


def test_revoking_a_coordinator_ends_its_session_at_once(signed_in: Console) -> None:
    assert signed_in.client.get("/", follow_redirects=False).status_code == 200
    with session_scope(signed_in.engine) as session:
        principals.revoke_principal(session, actor="test", name=COORDINATOR, now=signed_in.clock())
    response = signed_in.client.get("/", follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (303, "/login")
    refused = signed_in.client.post(
        "/records/" + "0" * 32 + "/note", data={"note": "x"}, follow_redirects=False
    )
    assert refused.headers["location"] == "/login"


def test_sessions_expire(sqlite_engine: Engine) -> None:
    console = _console(sqlite_engine, session_hours=1)
    console.sign_in()
    console.clock.advance(minutes=59)
    assert console.client.get("/", follow_redirects=False).status_code == 200
    console.clock.advance(minutes=1)
    assert console.client.get("/", follow_redirects=False).status_code == 303


def test_sign_out_ends_the_session_on_the_server(signed_in: Console) -> None:
    token = signed_in.client.cookies[SESSION_COOKIE]
    refused = signed_in.post("/logout", {}, csrf="stale")
    assert refused.status_code == 403
    assert signed_in.client.get("/", follow_redirects=False).status_code == 200
    response = signed_in.post("/logout", {})
    assert (response.status_code, response.headers["location"]) == (303, "/login")
    assert f'{SESSION_COOKIE}=""' in response.headers["set-cookie"]
    signed_in.client.cookies.set(SESSION_COOKIE, token)  # a copy of the cookie is no use now
    assert signed_in.client.get("/", follow_redirects=False).status_code == 303
    with session_scope(signed_in.engine) as session:
        assert web_sessions.resolve(session, token, signed_in.clock()) is None
    [entry] = signed_in.audit(action="web.sign_out")
    assert entry.actor == COORDINATOR


def test_secure_cookies_carry_the_host_prefix(sqlite_engine: Engine) -> None:
    credentials = provision(sqlite_engine, now=SEEDED_AT)
    app = create_app(sqlite_engine, clock=Clock(NOW))
    client = TestClient(app, base_url="https://testserver")
    form = client.get("/login")
    login_cookie = form.headers["set-cookie"]
    assert login_cookie.startswith("__Host-sigshare_login=")
    response = client.post(
        "/login",
        data={
            "credential": credentials[COORDINATOR],
            "csrf": client.cookies["__Host-sigshare_login"],
        },
        headers={"Origin": "https://testserver"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    session_cookie = next(
        value
        for value in response.headers.get_list("set-cookie")
        if value.startswith("__Host-sigshare_session=")
    )
    for cookie in (login_cookie, session_cookie):
        attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
        assert {"secure", "httponly", "samesite", "path"} <= attributes
        assert "domain" not in attributes
        assert "SameSite=strict" in cookie
    assert client.get("/", follow_redirects=False).status_code == 200


# ---------------------------------------------------------------------------------- CSRF


REVIEW_POSTS = [
    ("status", {"status": "triaged", "note": "n"}),
    ("assign", {"assignee": ADMIN}),
    ("note", {"note": "a note"}),
]


@pytest.mark.parametrize(("action", "data"), REVIEW_POSTS)
@pytest.mark.parametrize("csrf", ["", "wrong-token"])
def test_posts_without_the_sessions_token_are_refused(
    signed_in: Console, action: str, data: dict[str, str], csrf: str
) -> None:
    seed_indicators(signed_in.engine, 3)
    record = first_indicator(signed_in)
    before = signed_in.status_of(record)
    response = signed_in.post(f"/records/{record}/{action}", data, csrf=csrf)
    assert response.status_code == 403
    assert "Request refused" in response.text
    assert signed_in.status_of(record) == before
    assert signed_in.audit(actor=COORDINATOR, action=f"review.{action}") == []


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "http://testserver.evil.example"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site", "Origin": "null"},
    ],
)
def test_cross_site_posts_are_refused_even_with_the_token(
    signed_in: Console, headers: dict[str, str]
) -> None:
    seed_indicators(signed_in.engine, 3)
    record = first_indicator(signed_in)
    before = signed_in.status_of(record)
    response = signed_in.post(f"/records/{record}/note", {"note": "x"}, headers=headers)
    assert response.status_code == 403
    assert signed_in.status_of(record) == before


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"},
        # What browsers send on the console's own forms under Referrer-Policy: no-referrer.
        {"Origin": "null", "Sec-Fetch-Site": "same-origin"},
        {},
    ],
)
def test_same_origin_posts_with_the_token_are_accepted(
    signed_in: Console, headers: dict[str, str]
) -> None:
    seed_indicators(signed_in.engine, 3)
    record = first_indicator(signed_in)
    events = signed_in.status_of(record)[2]
    response = signed_in.post(f"/records/{record}/note", {"note": "x"}, headers=headers)
    assert response.status_code == 303
    assert signed_in.status_of(record)[2] == events + 1


# ---------------------------------------------------------------------------------- review


def test_review_actions_change_state_history_and_audit(
    signed_in: Console, forum: SeededForum
) -> None:
    record = first_indicator(signed_in)
    page = signed_in.client.get(f"/indicators/{record}")
    assert status_options(page.text) == ["triaged", "dismissed"]
    done = signed_in.post(f"/records/{record}/status", {"status": "triaged", "note": "real one"})
    assert (done.status_code, done.headers["location"]) == (303, f"/indicators/{record}")
    shown = signed_in.client.get(done.headers["location"])
    assert "Status changed to triaged." in shown.text
    assert "real one" in shown.text
    assert status_options(shown.text) == ["confirmed", "dismissed"]
    assert signed_in.client.get(f"/indicators/{record}").text.count("flash-ok") == 0

    signed_in.post(f"/records/{record}/assign", {"assignee": ADMIN, "note": "yours"})
    signed_in.post(f"/records/{record}/note", {"note": "second look <b>bold</b>"})
    signed_in.post(f"/records/{record}/status", {"status": "confirmed"})
    assert signed_in.status_of(record) == (ReviewStatus.CONFIRMED, ADMIN, 4)
    with session_scope(signed_in.engine) as session:
        _, events = reviews.history(session, record)
    assert [(e.actor, e.from_status, e.to_status, e.assignee, e.note) for e in events] == [
        (COORDINATOR, ReviewStatus.NEW, ReviewStatus.TRIAGED, None, "real one"),
        (COORDINATOR, None, None, ADMIN, "yours"),
        (COORDINATOR, None, None, ADMIN, "second look <b>bold</b>"),
        (COORDINATOR, ReviewStatus.TRIAGED, ReviewStatus.CONFIRMED, ADMIN, None),
    ]
    detail = signed_in.client.get(f"/indicators/{record}").text
    assert "second look &lt;b&gt;bold&lt;/b&gt;" in detail
    assert "<b>bold</b>" not in detail
    assert "assigned to admin" in detail
    reviewed = [
        e for e in reversed(signed_in.audit(actor=COORDINATOR)) if e.action != "web.indicator"
    ]
    assert [(e.action, e.target) for e in reviewed][-4:] == [
        ("review.status", f"indicator:{record}"),
        ("review.assign", f"indicator:{record}"),
        ("review.note", f"indicator:{record}"),
        ("review.status", f"indicator:{record}"),
    ]
    assert reviewed[-4].details == {"from": "new", "to": "triaged", "note": True}

    campaign = first_campaign(signed_in)
    moved = signed_in.post(f"/records/{campaign}/status", {"status": "dismissed"})
    assert moved.headers["location"] == f"/campaigns/{campaign}"
    assert signed_in.status_of(campaign) == (ReviewStatus.DISMISSED, None, 1)
    unassigned = signed_in.post(f"/records/{campaign}/assign", {"assignee": ""})
    assert "Unassigned." in signed_in.client.get(unassigned.headers["location"]).text


def test_notes_for_members_are_given_with_a_status_or_as_a_note_and_shown(
    signed_in: Console, forum: SeededForum
) -> None:
    record = first_indicator(signed_in)
    signed_in.post(
        f"/records/{record}/status",
        {"status": "triaged", "note": "internal", "member_note": "block these <accounts>"},
    )
    with session_scope(signed_in.engine) as session:
        found = reviews.indicator(session, record)
    assert found.item.member_note == "block these <accounts>"
    page = signed_in.client.get(f"/indicators/{record}").text
    assert 'Note for members: <q class="member-note">block these &lt;accounts&gt;</q>' in page
    assert "for members:</span> block these &lt;accounts&gt;" in page

    done = signed_in.post(
        f"/records/{record}/note", {"note": "rate-limit as well", "for_members": "1"}
    )
    assert "Note for members added." in signed_in.client.get(done.headers["location"]).text
    signed_in.post(f"/records/{record}/note", {"note": "just for us"})
    with session_scope(signed_in.engine) as session:
        found = reviews.indicator(session, record)
        _, events = reviews.history(session, record)
    assert found.item.member_note == "rate-limit as well"
    assert [(e.change, e.note, e.member_note) for e in events[1:]] == [
        ("note for members", None, "rate-limit as well"),
        ("note", "just for us", None),
    ]
    # Newest first: the note for us, then the note for members.
    assert [e.details for e in signed_in.audit(action="review.note")] == [
        {},
        {"for_members": True},
    ]


def status_options(page: str) -> list[str]:
    form = page.split('action="/records/')[1].split("</form>", maxsplit=1)[0]
    return re.findall(r'<option value="([a-z]+)">', form)


def test_a_refused_review_action_says_why_and_changes_nothing(
    signed_in: Console, forum: SeededForum
) -> None:
    record = first_indicator(signed_in)
    for data, expected in [
        ({"status": "confirmed"}, "is new; it can move to dismissed, triaged, not confirmed"),
        ({"status": "bogus"}, "unknown status"),
    ]:
        response = signed_in.post(f"/records/{record}/status", data)
        assert response.headers["location"] == f"/indicators/{record}"
        page = signed_in.client.get(response.headers["location"]).text
        assert "flash-error" in page
        assert expected in page
        assert "Traceback" not in page
    signed_in.post(f"/records/{record}/assign", {"assignee": "Not A Name!"})
    signed_in.post(f"/records/{record}/note", {"note": "   "})
    assert signed_in.status_of(record) == (ReviewStatus.NEW, None, 0)
    assert signed_in.audit(action="review.status") == []
    missing = signed_in.post("/records/" + "f" * 32 + "/note", {"note": "x"})
    assert missing.headers["location"] == "/indicators"
    assert "not found" in signed_in.client.get("/indicators").text


def assignee_options(page: str) -> list[tuple[str, str, bool]]:
    """The assign form's choices: (value, label, selected)."""
    form = page.split('<select name="assignee">', 1)[1].split("</select>", 1)[0]
    return [
        (value, label, bool(selected))
        for value, selected, label in re.findall(
            r'<option value="([^"]*)"( selected)?>([^<]*)</option>', form
        )
    ]


def test_records_are_assigned_only_to_current_coordinators_and_admins(
    signed_in: Console, forum: SeededForum
) -> None:
    with session_scope(signed_in.engine) as session:
        for name in ("carol", "dave"):
            principals.add_principal(
                session, actor="test", name=name, role=Role.COORDINATOR, now=SEEDED_AT
            )
        principals.revoke_principal(session, actor="test", name="dave", now=SEEDED_AT)
    record = first_indicator(signed_in)
    page = signed_in.client.get(f"/indicators/{record}").text
    assert 'name="assignee" list=' not in page  # a choice, not free text
    assert assignee_options(page) == [
        ("", "nobody", True),
        (ADMIN, ADMIN, False),
        ("carol", "carol", False),
        (COORDINATOR, COORDINATOR, False),
    ]
    choices = f"records are assigned to one of {ADMIN}, carol, {COORDINATOR}"
    for name, refusal in [
        ("bob", f"no coordinator or admin named 'bob': {choices}"),
        ("m1", f"no coordinator or admin named 'm1' (m1 is a member): {choices}"),
        ("dave", f"coordinator 'dave' is revoked: {choices}"),
    ]:
        response = signed_in.post(f"/records/{record}/assign", {"assignee": name})
        assert response.headers["location"] == f"/indicators/{record}"
        shown = signed_in.client.get(response.headers["location"]).text
        assert "flash-error" in shown
        assert refusal in html.unescape(shown), name
    assert signed_in.status_of(record) == (ReviewStatus.NEW, None, 0)
    assert signed_in.audit(action="review.assign") == []

    signed_in.post(f"/records/{record}/assign", {"assignee": "carol"})
    assert signed_in.status_of(record) == (ReviewStatus.NEW, "carol", 1)
    assert ("carol", "carol", True) in assignee_options(
        signed_in.client.get(f"/indicators/{record}").text
    )


def test_flash_messages_cannot_be_forged(signed_in: Console) -> None:
    signed_in.client.cookies.set("sigshare_flash", "eyJsZXZlbCI6Im9rIiwidGV4dCI6ImhpIn0.forged")
    page = signed_in.client.get("/")
    assert "flash-ok" not in page.text
    assert "sigshare_flash" in page.headers["set-cookie"]  # and it is cleared


# ---------------------------------------------------------------------------------- listings


def test_indicator_filters_sorting_and_pages_return_exact_rows(signed_in: Console) -> None:
    records = seed_indicators(signed_in.engine)
    newest = ordered(records, lambda r: r.index, descending=True)
    first = signed_in.client.get("/indicators")
    assert ids_on(first) == [r.id for r in newest[:50]]
    assert "1–50 of 120 indicators" in first.text
    last = page_at(signed_in.client, "/indicators", 3)
    assert ids_on(last) == [r.id for r in newest[100:]]
    assert "101–120 of 120 indicators" in last.text
    assert linked(last, "next") is None
    back = signed_in.client.get(linked(last, "prev") or "")
    assert ids_on(back) == [r.id for r in newest[50:100]]
    assert "51–100 of 120 indicators" in back.text

    cases: list[tuple[str, Callable[[BulkIndicator], bool], Callable[[Any], Any], bool, int, int]]
    cases = [
        ("kind=ip&sort=reporters&order=asc&size=10", lambda r: r.kind == "ip",
         lambda r: r.reporters, False, 10, 2),
        ("status=triaged&sort=last_seen&order=desc&size=25", lambda r: r.status == "triaged",
         lambda r: r.last_seen, True, 25, 1),
        ("category=urgent&sort=status&order=asc&size=5",
         lambda r: "urgent" in r.categories, lambda r: r.status.value, False, 5, 3),
        ("assignee=admin&sort=kind&order=desc", lambda r: r.assignee == ADMIN,
         lambda r: r.kind, True, 50, 1),
        ("kind=email&status=new&category=cat2&sort=created&order=asc&size=200",
         lambda r: r.kind == EMAIL and r.status == "new" and "cat2" in r.categories,
         lambda r: r.index, False, 200, 1),
    ]  # fmt: skip
    for query, keep, key, descending, size, page in cases:
        matching = ordered([r for r in records if keep(r)], key, descending=descending)
        expected = matching[(page - 1) * size : page * size]
        response = page_at(signed_in.client, f"/indicators?{query}", page)
        assert ids_on(response) == [r.id for r in expected], query
        assert f"of {len(matching)} indicators" in response.text, query
    # The sort links keep the filters and flip the order of the active column.
    page = signed_in.client.get("/indicators?kind=ip&sort=reporters&order=desc").text
    assert 'href="/indicators?kind=ip&amp;sort=reporters&amp;order=asc&amp;size=50"' in page


def test_listing_parameters_are_checked(signed_in: Console) -> None:
    seed_indicators(signed_in.engine, 12)
    for query, message in [
        ("status=bogus", "unknown status"),
        ("kind=Not%20a%20kind", "is not a valid name"),
        ("assignee=%3Cscript%3E", "is not a valid name"),
        ("category=" + "x" * 65, "printable characters"),
    ]:
        response = signed_in.client.get(f"/indicators?{query}")
        assert response.status_code == 400, query
        assert message in response.text
        assert "<script>" not in response.text
    lenient = signed_in.client.get("/indicators?page=zero&size=100000&sort=nonsense&order=up")
    assert len(ids_on(lenient)) == 12
    assert 'option value="500" selected' in lenient.text
    after_the_oldest = Cursor("indicators", "created", True, 1, 1)  # row ids start at 1
    beyond = signed_in.client.get(f"/indicators?cursor={after_the_oldest.encode()}")
    assert ids_on(beyond) == []
    assert "Go to the first page" in beyond.text
    # A page token this hub did not issue, or one of another order, is refused.
    for token in ("p1.5", "c1.AAAA", after_the_oldest.encode()):
        refused = signed_in.client.get(f"/indicators?sort=reporters&cursor={token}")
        assert refused.status_code == 400, token
        assert "page token is not one this hub issued" in refused.text


def test_a_page_past_the_end_says_so_and_links_to_the_first_page(signed_in: Console) -> None:
    records = seed_indicators(signed_in.engine, 12)
    fresh = [r.id for r in ordered(records, lambda r: r.index, descending=True)]
    fresh = [i for i in fresh if signed_in.status_of(i)[0] is ReviewStatus.NEW]
    first = signed_in.client.get("/indicators?status=new&size=5")
    assert ids_on(first) == fresh[:5]
    following = linked(first, "next")
    assert following is not None
    # Everything past the first page is triaged meanwhile: the link now points past the end.
    with session_scope(signed_in.engine) as session:
        for record in fresh[5:]:
            reviews.set_status(
                session, actor="test", record_id=record, status=ReviewStatus.TRIAGED, now=NOW
            )
    stale = signed_in.client.get(following)
    assert ids_on(stale) == []
    text = html.unescape(stale.text)
    assert (
        "No indicators past this point: the list has changed since this link was made "
        "(5 match now). Go to the first page." in re.sub(r"<[^>]+>", "", text)
    )
    assert '<a href="/indicators?status=new&amp;sort=created&amp;order=desc&amp;size=5">' in (
        stale.text
    )
    seed_campaigns(signed_in.engine, 3)
    past = Cursor("campaigns", "created", True, 1, 1).encode()
    campaigns = signed_in.client.get(f"/campaigns?cursor={past}")
    assert "No campaigns past this point" in campaigns.text
    oldest = min(entry.id for entry in signed_in.audit())  # the audit log pages the same way
    beyond = Cursor("audit", "id", True, oldest, oldest).encode()
    audit_page = signed_in.client.get(f"/audit?cursor={beyond}")
    assert "No audit entries past this point" in audit_page.text
    assert "Go to the newest entries" in audit_page.text
    assert "No audit entries match." in signed_in.client.get("/audit?actor=nobody").text


def test_campaign_filters_sorting_and_pages_return_exact_rows(signed_in: Console) -> None:
    records = seed_campaigns(signed_in.engine)
    cases: list[tuple[str, Callable[[BulkCampaign], bool], Callable[[Any], Any], bool, int, int]]
    cases = [
        ("", lambda c: True, lambda c: c.index, True, 50, 1),
        ("sort=volume&order=asc&size=10", lambda c: True, lambda c: c.volume, False, 10, 2),
        ("sort=similarity&size=7", lambda c: True, lambda c: c.similarity, True, 7, 4),
        ("category=family1&sort=members&order=asc", lambda c: "family1" in c.categories,
         lambda c: c.members, False, 50, 1),
        ("family=prompt&status=new&sort=created&order=asc&size=25", lambda c: True,
         lambda c: c.index, False, 25, 1),
    ]  # fmt: skip
    for query, keep, key, descending, size, page in cases:
        matching = ordered([c for c in records if keep(c)], key, descending=descending)
        expected = matching[(page - 1) * size : page * size]
        response = page_at(signed_in.client, f"/campaigns?{query}", page)
        assert ids_on(response, CAMPAIGN_LINK) == [c.id for c in expected], query
        assert f"of {len(matching)} campaigns" in response.text
    assert ids_on(signed_in.client.get("/campaigns?status=confirmed"), CAMPAIGN_LINK) == []
    assert "No active campaigns match" in signed_in.client.get("/campaigns?status=confirmed").text


def test_audit_log_is_searchable_and_paged_newest_first(signed_in: Console) -> None:
    with session_scope(signed_in.engine) as session:
        appended = [
            AuditRepository(session).append("bulk", f"bulk.{i % 2}", f"t{i}", {"i": i}, at=NOW).id
            for i in range(60)
        ]
    newest = appended[::-1]
    pages = []
    response = signed_in.client.get("/audit?actor=bulk&size=25")
    while True:
        pages.append(entry_ids(response.text))
        older = re.search(r'href="([^"]+)" rel="next"', response.text)
        if older is None:
            break
        response = signed_in.client.get(older.group(1).replace("&amp;", "&"))
    assert pages == [newest[:25], newest[25:50], newest[50:]]
    assert "51–60 of 60 entries" in response.text
    newer = re.search(r'href="([^"]+)" rel="prev"', response.text)
    assert newer is not None
    back = signed_in.client.get(newer.group(1).replace("&amp;", "&"))
    assert entry_ids(back.text) == newest[25:50]
    only = signed_in.client.get("/audit?actor=bulk&action=bulk.1&size=500")
    assert entry_ids(only.text) == [i for i in newest if (i - appended[0]) % 2 == 1]
    assert "of 30 entries" in only.text
    assert (
        '<code class="details">{"i": 59}</code>' in signed_in.client.get("/audit?actor=bulk").text
    )
    assert "No audit entries match." in signed_in.client.get("/audit?actor=nobody").text


def entry_ids(page: str) -> list[int]:
    return [int(i) for i in re.findall(r'<td class="num">(\d+)</td>\s*<td><time', page)]


# ---------------------------------------------------------------------------------- pages


def test_overview_shows_members_submission_health_and_counts(
    signed_in: Console, forum: SeededForum
) -> None:
    page = signed_in.client.get("/")
    assert page.status_code == 200
    with session_scope(signed_in.engine) as session:
        views = coordinator_views.submissions(session, EMAIL)
        counts = reviews.status_counts(session)
    assert {v.member for v in views} == set(MEMBERS)
    for view in views:
        bloom = view.params.bloom_params() if view.params else None
        assert bloom is not None
        assert view.submission.set_bits is not None
        fill = view.submission.set_bits / bloom.m
        assert f"{fill * 100:.1f}%" in page.text
        assert f"{bloom.fpr_at_fill(fill):.1e}" in page.text
    for member in MEMBERS:
        assert f'<th scope="row">{member}' in page.text
    indicators_new = counts[RecordType.INDICATOR][ReviewStatus.NEW]
    assert indicators_new == len(forum.shared_values)
    assert 'href="/indicators?status=new"><span class="badge badge-new">new</span>' in page.text
    assert f'<span class="count">{indicators_new}</span>' in page.text
    for fmt in ("csv", "json", "stix"):
        assert f'href="/export/{fmt}"' in page.text


OVERVIEW_ROW = re.compile(r'<tr>\s*<th scope="row">(m\d)(.*?)</tr>', re.DOTALL)
FLAG_BADGES = {
    "declared_count_jump": '<span class="badge badge-warn" title="declared count over 5× the ',
    "query_volume_jump": '<span class="badge badge-warn" title="distinct tokens asked about ',
}
"""The start of each probing flag's badge (its title explains it, its text is the label)."""
FLAG_TEXTS = {
    "declared_count_jump": ">count jumped</span>",
    "query_volume_jump": ">queries jumped</span>",
}


def test_overview_shows_probing_flags_as_badges_on_the_flagged_members_only(
    signed_in: Console,
) -> None:
    seed_probing(signed_in.engine, provisioned=True)
    page = signed_in.client.get("/")
    assert page.status_code == 200
    rows = dict(OVERVIEW_ROW.findall(page.text))
    assert sorted(rows) == sorted(PROBES)
    for member, row in rows.items():
        shown = {
            flag for flag in FLAG_BADGES if FLAG_BADGES[flag] in row and FLAG_TEXTS[flag] in row
        }
        assert shown == set(PROBE_FLAGS[member]), member
        assert '<span class="badge badge-ok">ok</span>' in row  # healthy filters all the same
    for flag, text in FLAG_TEXTS.items():
        flagged = [m for m, flags in PROBE_FLAGS.items() if flag in flags]
        assert page.text.count(text) == len(flagged) == 1, flag


def test_overview_with_nothing_submitted_shows_empty_states(signed_in: Console) -> None:
    page = signed_in.client.get("/").text
    assert page.count("no active submission") == len(MEMBERS)
    overlaps = signed_in.client.get("/overlaps").text
    assert "No member has a current email submission." in overlaps
    assert "No shared indicators match" in signed_in.client.get("/indicators").text


def test_overlap_heatmap_is_an_svg_with_member_names(
    signed_in: Console, forum: SeededForum
) -> None:
    page = signed_in.client.get("/overlaps?kind=email")
    assert page.status_code == 200
    svg = page.text.split("<svg", 1)[1].split("</svg>", 1)[0]
    assert 'role="img"' in svg
    for member in MEMBERS:
        assert f">{member}</text>" in svg
    assert svg.count('<g class="cell"><title>') == len(MEMBERS) ** 2
    assert "<title>m1 ∩ m2: ≈ " in svg
    assert 'fill="url(#heatmap-scale)"' in svg
    with session_scope(signed_in.engine) as session:
        matrix = coordinator_views.overlap_matrix(session, EMAIL, NOW)
    assert matrix.members == list(MEMBERS)
    table = page.text.split('<table class="matrix">', 1)[1]
    for i in range(len(MEMBERS)):
        for j in range(len(MEMBERS)):
            assert f"{figure(matrix.estimate[i][j])} <span" in table
    unknown = signed_in.client.get("/overlaps?kind=fax")
    assert unknown.status_code == 404


def test_reporter_names_only_where_policy_reveals_them(
    signed_in: Console, forum: SeededForum
) -> None:
    record = first_indicator(signed_in)
    hidden = signed_in.client.get(f"/indicators/{record}").text
    assert "names hidden by the kind" in hidden
    assert not re.search(r"Reporters</dt><dd>\d+: m\d", hidden)
    assert '<div class="names">' not in signed_in.client.get("/indicators").text
    set_email_policy(signed_in.engine, reveal_members=True)
    shown = signed_in.client.get(f"/indicators/{record}").text
    assert re.search(r"Reporters</dt><dd>\d+: m\d", shown)
    assert '<div class="names">m' in signed_in.client.get("/indicators").text


def test_campaign_pages_show_when_their_clusters_were_first_and_last_seen(
    signed_in: Console, forum: SeededForum
) -> None:
    listing = signed_in.client.get("/campaigns?sort=created&order=asc")
    assert '<th scope="col">First seen</th>' in listing.text
    with session_scope(signed_in.engine) as session:
        campaigns = reviews.campaigns(
            session, RecordQuery(RecordType.CAMPAIGN, descending=False)
        ).items
    rows = re.findall(r"<tr>(.*?)</tr>", listing.text, re.DOTALL)[1:]
    assert len(rows) == len(campaigns) == 2
    for row, campaign in zip(rows, campaigns, strict=True):
        first, last = expected_campaign_seen(campaign.members)
        assert (campaign.first_seen, campaign.last_seen) == (first, last)
        assert campaign.id in row
        assert f"<td>{first:%Y-%m-%d %H:%MZ}</td>\n      <td>{last:%Y-%m-%d %H:%MZ}</td>" in row
        detail = signed_in.client.get(f"/campaigns/{campaign.id}").text
        assert f"<dt>First seen</dt><dd>{first:%Y-%m-%d %H:%MZ} " in detail
        assert f"<dt>Last seen</dt><dd>{last:%Y-%m-%d %H:%MZ}</dd>" in detail
        assert f"<dt>Members</dt><dd>2: {', '.join(campaign.members)}</dd>" in detail


def test_no_token_raw_value_or_prompt_reaches_any_page(
    signed_in: Console, forum: SeededForum
) -> None:
    signed_in.post(f"/records/{first_indicator(signed_in)}/note", {"note": "checked"})
    indicators = ids_on(signed_in.client.get("/indicators?size=500"))
    campaigns = ids_on(signed_in.client.get("/campaigns?size=500"), CAMPAIGN_LINK)
    assert len(indicators) == len(forum.shared_values)
    assert len(campaigns) == len(forum.campaign_templates())
    paths = [
        "/",
        "/overlaps?kind=email",
        "/indicators?size=500",
        "/indicators?sort=reporters&order=asc",
        "/campaigns?size=500",
        "/audit?size=500",
        "/export",
        "/login",
        *(f"/indicators/{i}" for i in indicators),
        *(f"/campaigns/{c}" for c in campaigns),
    ]
    forbidden = forum.forbidden_strings()
    session_token = signed_in.client.cookies[SESSION_COOKIE]
    for path in paths:
        page = signed_in.client.get(path)
        assert page.status_code == 200, path
        body = page.text
        leaked = [s for s in forbidden if s in body]
        assert not leaked, f"{path} shows {leaked[:3]}"
        assert session_token not in body
        assert not any(token in page.content for token in forum.forbidden_bytes())
        assert not inline_code(body), path


def test_page_views_are_audited_once_each(signed_in: Console, forum: SeededForum) -> None:
    record = first_indicator(signed_in)
    campaign = first_campaign(signed_in)
    for path, action, target in [
        ("/", "web.overview", "*"),
        ("/overlaps", "web.overlaps", EMAIL),
        ("/indicators?kind=email&status=new", "web.indicators", EMAIL),
        (f"/indicators/{record}", "web.indicator", f"indicator:{record}"),
        ("/campaigns", "web.campaigns", "*"),
        (f"/campaigns/{campaign}", "web.campaign", f"campaign:{campaign}"),
        ("/audit?actor=coord", "web.audit", "*"),
        ("/export/json", "export", "json"),
    ]:
        before = len(signed_in.audit())
        assert signed_in.client.get(path).status_code == 200, path
        after = signed_in.audit()
        added = after[: len(after) - before]
        assert [(e.actor, e.action, e.target) for e in added] == [(COORDINATOR, action, target)]
    [listing] = signed_in.audit(action="web.indicators")
    assert listing.details == {
        "kind": EMAIL,
        "status": "new",
        "sort": "created",
        "order": "desc",
        "size": 50,
        "first": 1,
    }


def test_page_views_are_sampled_while_every_action_and_export_is_recorded(
    signed_in: Console, forum: SeededForum
) -> None:
    def recorded() -> list[tuple[str, str]]:
        entries = reversed(signed_in.audit(actor=COORDINATOR))
        return [(e.action, e.target) for e in entries if e.action != "web.sign_in"]

    record, other = ids_on(signed_in.client.get("/indicators"))[:2]  # a view: recorded
    for path in ("/indicators?status=new", f"/indicators/{record}", f"/indicators/{other}"):
        assert signed_in.client.get(path).status_code == 200
    signed_in.clock.advance(minutes=5)
    for _ in range(2):
        signed_in.post(f"/records/{record}/note", {"note": "seen"})
        assert signed_in.client.get("/export/json").status_code == 200
    assert signed_in.client.get("/indicators?kind=email").status_code == 200
    assert recorded() == [
        ("web.indicators", "*"),
        ("web.indicator", f"indicator:{record}"),
        ("review.note", f"indicator:{record}"),
        ("export", "json"),
        ("review.note", f"indicator:{record}"),
        ("export", "json"),
    ]
    signed_in.clock.advance(seconds=PAGE_VIEW_INTERVAL.total_seconds() - 5 * 60)
    signed_in.client.get("/indicators?kind=email")  # the interval since the first is over
    signed_in.client.get(f"/indicators/{other}")  # and since this kind's first, too
    signed_in.clock.advance(minutes=9)
    signed_in.client.get("/indicators")  # within the new interval: not recorded
    assert recorded()[6:] == [
        ("web.indicators", EMAIL),
        ("web.indicator", f"indicator:{other}"),
    ]
    entries = len(signed_in.audit())
    with session_scope(signed_in.engine) as session:
        assert verify_audit_log(session).entries == entries


@pytest.mark.parametrize(
    ("fmt", "media_type", "suffix"),
    [
        ("csv", "text/csv", ".csv"),
        ("json", "application/json", ".json"),
        ("stix", "application/stix+json", ".stix.json"),
    ],
)
def test_exports_download_as_attachments(
    signed_in: Console, forum: SeededForum, fmt: str, media_type: str, suffix: str
) -> None:
    response = signed_in.client.get(f"/export/{fmt}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(media_type)
    disposition = response.headers["content-disposition"]
    assert re.fullmatch(rf'attachment; filename="sigshare-export-[0-9TZ]+\{suffix}"', disposition)
    for record in ids_on(signed_in.client.get("/indicators")):
        assert record.encode() in response.content
    assert secured(response)


def test_stix_downloads_carry_the_tlp_level_chosen(signed_in: Console, forum: SeededForum) -> None:
    page = signed_in.client.get("/export").text
    form = page.split('action="/export/stix"', 1)[1].split("</form>", 1)[0]
    assert re.findall(r'<option value="([^"]+)"', form) == list(TLP_LEVELS)
    assert '<option value="amber" selected>TLP:AMBER</option>' in form
    for query, level in [
        ("", "amber"),
        ("?tlp=green", "green"),
        ("?tlp=amber%2Bstrict", "amber+strict"),
        ("?tlp=amber+strict", "amber+strict"),  # typed by hand: "+" arrives as a space
        ("?tlp=red", "red"),
    ]:
        response = signed_in.client.get(f"/export/stix{query}")
        assert response.status_code == 200, query
        objects = json.loads(response.content)["objects"]
        (marking,) = [o for o in objects if o["type"] == "marking-definition"]
        assert (marking["id"], marking["name"]) == (TLP_MARKING_IDS[level], f"TLP:{level.upper()}")
        assert {tuple(o["object_marking_refs"]) for o in objects if o is not marking} == {
            (TLP_MARKING_IDS[level],)
        }
    exported = len(signed_in.audit(action="export"))
    refused = signed_in.client.get("/export/stix?tlp=white")
    assert refused.status_code == 400
    assert (
        "unknown TLP level &#39;white&#39;: use clear, green, amber, amber+strict, red"
        in refused.text
    )
    assert "attachment" not in refused.headers.get("content-disposition", "")
    assert len(signed_in.audit(action="export")) == exported


def test_unknown_export_format_and_pages_are_not_found(signed_in: Console) -> None:
    for path in ("/export/xml", "/indicators/" + "a" * 32, "/campaigns/nothex", "/nowhere"):
        response = signed_in.client.get(path)
        assert response.status_code == 404, path
        assert "Not found" in response.text


def test_every_response_carries_the_security_headers(
    signed_in: Console, forum: SeededForum
) -> None:
    record = first_indicator(signed_in)
    anonymous = TestClient(signed_in.client.app)
    responses = [
        anonymous.get("/login"),
        anonymous.get("/", follow_redirects=False),
        anonymous.get("/static/console.css"),
        anonymous.post("/login", data={"credential": "x"}),
        anonymous.get("/nowhere"),
        signed_in.client.get("/"),
        signed_in.client.get("/overlaps"),
        signed_in.client.get(f"/indicators/{record}"),
        signed_in.client.get("/indicators?status=bogus"),
        signed_in.post(f"/records/{record}/note", {"note": "x"}),
        signed_in.post(f"/records/{record}/note", {"note": "x"}, csrf="bad"),
        signed_in.client.put("/"),
    ]
    assert [r.status_code for r in responses] == [
        200, 303, 200, 403, 404, 200, 200, 200, 400, 303, 403, 405,
    ]  # fmt: skip
    for response in responses:
        assert secured(response), response.url
    assert responses[0].headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert responses[2].headers["content-type"].startswith("text/css")


def test_an_internal_error_is_a_plain_page_without_a_trace(
    signed_in: Console, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(reviews, "indicators", broken)
    response = signed_in.client.get("/indicators")
    assert response.status_code == 500
    assert "secret internals" not in response.text
    assert "Traceback" not in response.text
    assert re.search(r"Reference <code>[0-9a-f]{12}</code>", response.text)
    assert secured(response)


def inline_code(body: str) -> list[str]:
    """Inline script or style in a page: what the Content Security Policy would block."""
    return re.findall(r"<script|<style|\sstyle=|\son[a-z]+=|javascript:", body)


def secured(response: httpx.Response) -> bool:
    """Whether the response carries every security header with its exact value."""
    return all(response.headers.get(name) == value for name, value in SECURITY_HEADERS.items())


def test_static_pages_have_no_inline_script_or_style(signed_in: Console) -> None:
    css = signed_in.client.get("/static/console.css")
    assert css.status_code == 200
    for path in ("/", "/login", "/indicators", "/campaigns", "/audit", "/export", "/overlaps"):
        body = signed_in.client.get(path).text
        assert not inline_code(body), path


# ---------------------------------------------------------------------------------- command


def test_web_command_keeps_plaintext_on_loopback_and_needs_a_current_schema(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    url = str(sqlite_engine.url)
    plaintext_abroad = invoke_hub(url, "web", "--listen", "0.0.0.0:0", "--insecure")
    assert plaintext_abroad.exit_code == ExitCode.INPUT
    assert "allowed only on loopback" in plaintext_abroad.stderr
    no_tls = invoke_hub(url, "web", "--listen", "127.0.0.1:0")
    assert no_tls.exit_code == ExitCode.INPUT
    assert "TLS is required" in no_tls.stderr
    half = invoke_hub(url, "web", "--tls-cert", str(tmp_path / "c.pem"))
    assert half.exit_code == ExitCode.USAGE
    bad_tls = tmp_path / "c.pem"
    bad_tls.write_text("not a certificate")
    unreadable = invoke_hub(url, "web", "--tls-cert", str(bad_tls), "--tls-key", str(bad_tls))
    assert unreadable.exit_code == ExitCode.INPUT
    assert "not a matching PEM certificate" in unreadable.stderr
    empty = tmp_path / "empty.db"
    empty.touch()
    unmigrated = invoke_hub(f"sqlite:///{empty}", "web", "--insecure", "--listen", "127.0.0.1:0")
    assert unmigrated.exit_code == ExitCode.CONFIG
    assert "db upgrade" in unmigrated.stderr


def test_web_command_serves_until_sigterm(sqlite_engine: Engine, tmp_path: Path) -> None:
    assert HUB.exists(), f"console script not installed at {HUB}"
    credentials = provision(sqlite_engine, now=datetime.now(UTC))
    log = tmp_path / "web.log"
    env = {k: v for k, v in os.environ.items() if k != DATABASE_URL_ENV}
    with hub_command_serving(
        [
            "--db",
            str(sqlite_engine.url),
            "web",
            "--insecure",
            "--listen",
            "127.0.0.1:0",
            "--log-json",
        ],
        log,
        env=env,
    ) as (process, port):
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", follow_redirects=True) as client:
            form = client.get("/login")
            assert form.status_code == 200
            assert secured(form)
            signed = client.post(
                "/login",
                data={"credential": credentials[COORDINATOR], "csrf": client.cookies[LOGIN_COOKIE]},
            )
            assert signed.status_code == 200
            assert "Overview" in signed.text
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
    output = log.read_text()
    assert process.returncode == 0, output
    messages = [json.loads(line)["message"] for line in output.splitlines()]
    assert any(m.startswith("serving web console address=127.0.0.1") for m in messages)
    assert messages[-1] == "stopped"
    assert credentials[COORDINATOR] not in output
