"""The coordinators' web console at forum scale: every page with 50,000 shared indicators and
5,000 campaigns in the database (quick: 5,000 and 500).

An SQLite hub is populated directly and fast: principals and parameters through the services,
real Bloom filters of a few members per kind through the submission service (so the overlap
heatmaps have data), then shared indicators with their confirmations from 20 members, campaigns
with their cluster memberships and an audit log, bulk-inserted through the storage models. The
console (``create_app``) then runs under uvicorn on 127.0.0.1 in a thread; a coordinator signs
in over HTTP with httpx and every page is timed as the client sees it, best of five, over one
keep-alive connection. Exports are downloads of the whole database and are reported apart from
the page goal.

The listener is made with ``IPPROTO_TCP`` so that asyncio sets ``TCP_NODELAY`` on connections;
the same page behind a ``socket.create_server`` listener (how ``sigshare-hub web`` binds) is timed
too, to show what the missing ``TCP_NODELAY`` costs a keep-alive client.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from sqlalchemy import Engine, func, insert, select

from sigshare.hub.domain import RecordType, ReviewStatus, Role
from sigshare.hub.listing import (
    AUDIT_LISTING,
    AUDIT_SORT,
    MAX_PAGE_SIZE,
    Cursor,
    Page,
    RecordQuery,
)
from sigshare.hub.services import parameters, principals, reviews
from sigshare.hub.services.families import prepare
from sigshare.hub.services.submissions import UploadHeader, submit_bloom
from sigshare.hub.storage import make_engine, migrate, session_scope
from sigshare.hub.storage.aggregates import FamilyRepository
from sigshare.hub.storage.audit import AuditRepository
from sigshare.hub.storage.models import (
    CampaignClusterRow,
    CampaignRow,
    ConfirmationRow,
    SharedIndicatorRow,
)
from sigshare.hub.storage.submissions import SubmissionRepository
from sigshare.hub.web import create_app
from sigshare.sketch.bloom import BloomFilter
from sigshare.sketch.codec import SketchFormat, encode_bloom
from tests.support.console import serve_console

KEY_ID = "bench-1"
KINDS = ("email", "phone", "ip")
FAMILY = "prompt"
MEMBERS = 20
FILTER_MEMBERS = 5
"""Members per kind that submit a real Bloom filter (the heatmap's rows)."""
CAPACITY = 100_000
FILTER_ITEMS = 40_000
FPR = 1e-3
"""Per-filter rate; the forum rate published is ``FPR × (MEMBERS − 1)`` for ``MEMBERS``, so the
filters (and the overlap pages' work) are the size they always were."""
COORDINATOR = "coord"
ACTOR = "bench"
CATEGORIES = ("account-farm", "card-testing", "proxy-rotation", "scraper", "distillation")
STATUS_WEIGHTS = {
    ReviewStatus.NEW: 0.6,
    ReviewStatus.TRIAGED: 0.2,
    ReviewStatus.CONFIRMED: 0.15,
    ReviewStatus.DISMISSED: 0.05,
}
PAGE_SIZE = 50
REPEATS = 5
EXPORT_REPEATS = 3
PAGE_GOAL_MS = 300.0
CHUNK = 5_000
EPOCH = datetime(2026, 6, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Populated:
    credential: str
    indicator_id: str
    campaign_id: str
    confirmations: int
    memberships: int
    audit_entries: int


def _principals(engine: Engine, now: datetime) -> tuple[str, list[int]]:
    with session_scope(engine) as session:
        for kind in KINDS:
            parameters.set_kind_parameters(
                session,
                actor=ACTOR,
                kind=kind,
                key_id=KEY_ID,
                capacity=CAPACITY,
                forum_fpr=FPR * (MEMBERS - 1),
                max_members=MEMBERS,
                reveal_members=kind == "ip",
                now=now,
            )
        parameters.set_minhash_parameters(
            session, actor=ACTOR, family=FAMILY, key_id=KEY_ID, now=now
        )
        members = [
            principals.add_principal(
                session, actor=ACTOR, name=f"m{index:02d}", role=Role.MEMBER, now=now
            )[0].id
            for index in range(MEMBERS)
        ]
        _, credential = principals.add_principal(
            session, actor=ACTOR, name=COORDINATOR, role=Role.COORDINATOR, now=now
        )
    return credential.token, members


def _filters(engine: Engine, now: datetime) -> None:
    """Real filters of the first few members per kind: a common pool (held by all of them)
    and a pool per pair, so every cell of the heatmap has its own overlap."""
    rng = np.random.default_rng(11)
    with session_scope(engine) as session:
        kinds = {p.kind: p for p in parameters.list_parameters(session)[0]}
        names = {p.name: p for p in principals.list_principals(session)}
    for kind in KINDS:
        params = kinds[kind].bloom_params()
        common = rng.integers(0, 2**63, size=(FILTER_ITEMS // 4, 2), dtype=np.uint64)
        for index in range(FILTER_MEMBERS):
            own = rng.integers(0, 2**63, size=(FILTER_ITEMS - len(common), 2), dtype=np.uint64)
            bloom = BloomFilter(params)
            bloom.add_tokens(common)
            bloom.add_tokens(own[: (index + 1) * len(own) // FILTER_MEMBERS])
            bloom.count = len(common) + (index + 1) * len(own) // FILTER_MEMBERS
            payload = encode_bloom(bloom)
            header = UploadHeader(
                format=SketchFormat.BLOOM_V1,
                kind=kind,
                key_id=KEY_ID,
                params_digest=params.digest(),
                declared_count=bloom.count,
                content_length=len(payload),
                content_sha256=hashlib.sha256(payload).digest(),
            )
            with session_scope(engine) as session:
                submit_bloom(session, names[f"m{index:02d}"], header, payload, now)


def _status(rng: random.Random) -> ReviewStatus:
    return rng.choices(list(STATUS_WEIGHTS), weights=list(STATUS_WEIGHTS.values()))[0]


def _indicators(engine: Engine, count: int, members: list[int], rng: random.Random) -> int:
    """``count`` shared indicators, each confirmed by 2-8 of the members; the confirmations."""
    confirmations = 0
    for start in range(0, count, CHUNK):
        rows: list[dict[str, Any]] = []
        confirmed: list[dict[str, Any]] = []
        for index in range(start, min(start + CHUNK, count)):
            kind = KINDS[index % len(KINDS)]
            token = rng.randbytes(16)
            holders = rng.sample(members, min(MEMBERS, 2 + int(rng.expovariate(0.7))))
            first = EPOCH + timedelta(minutes=rng.randrange(200_000))
            cats = rng.sample(CATEGORIES, rng.randint(1, 2))
            status = _status(rng)
            created = EPOCH + timedelta(seconds=index * 30)
            rows.append(
                {
                    "public_id": rng.randbytes(16).hex(),
                    "kind": kind,
                    "key_id": KEY_ID,
                    "token": token,
                    "reporters": len(holders),
                    "categories": json.dumps(sorted(cats)),
                    "first_seen": first,
                    "last_seen": first + timedelta(minutes=rng.randrange(100_000)),
                    "status": status.value,
                    "assignee": COORDINATOR if status is ReviewStatus.TRIAGED else None,
                    "created_at": created,
                    "updated_at": created,
                }
            )
            confirmed += [
                {
                    "kind": kind,
                    "key_id": KEY_ID,
                    "token": token,
                    "member_id": member,
                    "category": rng.choice(cats),
                    "first_seen": first,
                    "last_seen": first + timedelta(days=3),
                    "confirmed_at": created,
                }
                for member in holders
            ]
        with session_scope(engine) as session:
            session.execute(insert(SharedIndicatorRow), rows)
            session.execute(insert(ConfirmationRow), confirmed)
        confirmations += len(confirmed)
    return confirmations


def _campaigns(engine: Engine, count: int, members: list[int], rng: random.Random) -> int:
    """``count`` active campaigns of 2-8 members, each member with one or two clusters in it;
    the prompt family's state marked current, so reads never recompute them."""
    memberships = 0
    for start in range(0, count, CHUNK):
        rows: list[dict[str, Any]] = []
        clusters: list[dict[str, Any]] = []
        for index in range(start, min(start + CHUNK, count)):
            holders = rng.sample(members, rng.randint(2, 8))
            created = EPOCH + timedelta(seconds=index * 300)
            status = _status(rng)
            rows.append(
                {
                    "id": index + 1,
                    "public_id": rng.randbytes(16).hex(),
                    "family": FAMILY,
                    "members": len(holders),
                    "similarity": round(rng.uniform(0.5, 1.0), 3),
                    "volume": rng.randint(10, 50_000),
                    "categories": json.dumps(sorted(rng.sample(CATEGORIES, rng.randint(1, 3)))),
                    "status": status.value,
                    "assignee": COORDINATOR if status is ReviewStatus.TRIAGED else None,
                    "active": True,
                    "signature": rng.randbytes(128 * 4),
                    "created_at": created,
                    "updated_at": created,
                }
            )
            clusters += [
                {
                    "campaign_id": index + 1,
                    "member_id": member,
                    "cluster_id": rng.randbytes(16).hex(),
                    "similarity": round(rng.uniform(0.5, 1.0), 3),
                }
                for member in holders
                for _ in range(rng.randint(1, 2))
            ]
        with session_scope(engine) as session:
            session.execute(insert(CampaignRow), rows)
            session.execute(insert(CampaignClusterRow), clusters)
        memberships += len(clusters)
    with session_scope(engine) as session:
        family = parameters.minhash_parameters(session, FAMILY)
        assert family is not None
        SubmissionRepository(session).lock_family(family.family_kind)
        state = prepare(session, family, EPOCH)
        FamilyRepository(session).mark_derived(family.family_kind, state.version)
    return memberships


def _history_and_audit(engine: Engine, entries: int, rng: random.Random) -> tuple[str, str, int]:
    """Review steps on one indicator and one campaign, and ``entries`` audit entries of
    coordinators' past reads (appended, so the hash chain stays valid)."""
    with session_scope(engine) as session:
        new_indicators = RecordQuery(RecordType.INDICATOR, status=ReviewStatus.NEW, size=101)
        indicator = reviews.indicators(session, new_indicators).items[100]
        new_campaigns = RecordQuery(RecordType.CAMPAIGN, status=ReviewStatus.NEW, size=11)
        campaign = reviews.campaigns(session, new_campaigns).items[10]
        moment = datetime.now(UTC)
        for record in (indicator.id, campaign.id):
            reviews.set_status(
                session,
                actor=COORDINATOR,
                record_id=record,
                status=ReviewStatus.TRIAGED,
                note="Looks like the same farm as last month.",
                now=moment,
            )
            reviews.assign(
                session, actor=COORDINATOR, record_id=record, assignee=COORDINATOR, now=moment
            )
            reviews.add_note(
                session, actor=COORDINATOR, record_id=record, note="Asked m03.", now=moment
            )
        audit = AuditRepository(session)
        actions = ("web.indicators", "web.indicator", "web.campaigns", "web.overview")
        for index in range(entries):
            audit.append(
                f"coord{index % 3}",
                actions[index % len(actions)],
                "*",
                {"page": rng.randint(1, 100)},
                at=EPOCH + timedelta(seconds=index),
            )
    return indicator.id, campaign.id, entries


def populate(engine: Engine, indicators: int, campaigns: int) -> Populated:
    rng = random.Random(2026)  # reproducible benchmark data
    now = datetime.now(UTC)
    credential, members = _principals(engine, now)
    _filters(engine, now)
    confirmations = _indicators(engine, indicators, members, rng)
    memberships = _campaigns(engine, campaigns, members, rng)
    indicator_id, campaign_id, entries = _history_and_audit(engine, indicators // 5, rng)
    return Populated(
        credential=credential,
        indicator_id=indicator_id,
        campaign_id=campaign_id,
        confirmations=confirmations,
        memberships=memberships,
        audit_entries=entries,
    )


# ---------------------------------------------------------------------------------- serving


@contextmanager
def _signed_in(base: str, credential: str) -> Iterator[httpx.Client]:
    """A keep-alive client with a coordinator's session (closed on exit)."""
    with httpx.Client(base_url=base, timeout=120) as client:
        form = client.get("/login")
        match = re.search(r'name="csrf" value="([^"]+)"', form.text)
        if form.status_code != 200 or match is None:
            raise RuntimeError(f"no sign-in form: {form.status_code}")
        response = client.post(
            "/login", data={"credential": credential, "csrf": match.group(1), "next": "/"}
        )
        if response.status_code != 303:
            raise RuntimeError(f"sign-in refused: {response.status_code}")
        yield client


def _best_ms(client: httpx.Client, path: str, repeats: int) -> tuple[float, int]:
    best, size = math.inf, 0
    for _ in range(repeats):
        started = time.perf_counter()
        response = client.get(path)
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise RuntimeError(f"GET {path}: {response.status_code}")
        best, size = min(best, elapsed), len(response.content)
    return best * 1000, size


def _cursor_at(engine: Engine, query: RecordQuery, fraction: float) -> str | None:
    """The cursor of the console page (of :data:`PAGE_SIZE`) that lies ``fraction`` of the way
    through ``query``'s rows (1: the last page; ``None``: the first), found by walking the
    listing as a client would."""
    read = reviews.indicators if query.record_type is RecordType.INDICATOR else reviews.campaigns
    cursor: Cursor | None = None
    with session_scope(engine) as session:
        total = read(session, replace(query, size=1)).total
        rows = PAGE_SIZE * int(fraction * (total - 1) // PAGE_SIZE)
        while rows > 0:
            page: Page[Any] = read(
                session, replace(query, size=min(rows, MAX_PAGE_SIZE), cursor=cursor)
            )
            if page.next_cursor is None:
                raise RuntimeError(f"{query} ends before row {rows}")
            rows -= len(page.items)
            cursor = Cursor.decode(page.next_cursor)
    return None if cursor is None else cursor.encode()


def _pages(populated: Populated, engine: Engine) -> dict[str, str]:
    def deep(path: str, query: RecordQuery, fraction: float) -> str:
        cursor = _cursor_at(engine, query, fraction)
        if cursor is None:
            return path
        return f"{path}{'&' if '?' in path else '?'}cursor={cursor}"

    indicators = RecordQuery(RecordType.INDICATOR)
    campaigns = RecordQuery(RecordType.CAMPAIGN)
    older = populated.audit_entries // 2
    older_audit = Cursor(AUDIT_LISTING, AUDIT_SORT, True, older, older).encode()
    return {
        "overview": "/",
        "overlaps email": "/overlaps?kind=email",
        "overlaps phone": "/overlaps?kind=phone",
        "overlaps ip": "/overlaps?kind=ip",
        "indicators, first page": "/indicators",
        "indicators, middle page": deep("/indicators", indicators, 0.5),
        "indicators, last page": deep("/indicators", indicators, 1),
        "indicators, triaged, last page": deep(
            "/indicators?status=triaged", replace(indicators, status=ReviewStatus.TRIAGED), 1
        ),
        "indicators, phone by reporters, middle": deep(
            "/indicators?kind=phone&sort=reporters&order=desc",
            replace(indicators, scope="phone", sort="reporters"),
            0.5,
        ),
        "indicators, category filter": "/indicators?category=card-testing",
        "indicators, by last seen asc, middle": deep(
            "/indicators?sort=last_seen&order=asc",
            replace(indicators, sort="last_seen", descending=False),
            0.5,
        ),
        "indicators, 500 per page": "/indicators?size=500&sort=status",
        "indicator detail": f"/indicators/{populated.indicator_id}",
        "campaigns, first page": "/campaigns",
        "campaigns, middle page": deep("/campaigns", campaigns, 0.5),
        "campaigns, last page": deep("/campaigns", campaigns, 1),
        "campaigns, by volume, new only": "/campaigns?status=new&sort=volume",
        "campaigns, category filter": "/campaigns?category=scraper&sort=members&order=asc",
        "campaign detail": f"/campaigns/{populated.campaign_id}",
        "audit log": "/audit",
        "audit log, one action": "/audit?action=web.indicator",
        "audit log, one actor, older page": f"/audit?actor=coord1&cursor={older_audit}",
        "export page": "/export",
    }


def bench_web(*, quick: bool) -> dict[str, Any]:
    """Every console page, best of five, over 50k indicators / 5k campaigns (quick 5k/500)."""
    indicators, campaigns = (5_000, 500) if quick else (50_000, 5_000)
    out: dict[str, Any] = {"indicators": indicators, "campaigns": campaigns, "members": MEMBERS}
    with tempfile.TemporaryDirectory(prefix="sigshare-bench-web-") as directory:
        url = f"sqlite:///{Path(directory) / 'hub.db'}"
        migrate.upgrade(url)
        engine = make_engine(url)
        try:
            started = time.perf_counter()
            populated = populate(engine, indicators, campaigns)
            out["populate_seconds"] = round(time.perf_counter() - started, 1)
            with session_scope(engine) as session:
                counted = session.scalar(select(func.count()).select_from(SharedIndicatorRow))
                assert counted == indicators
            out["confirmations"] = populated.confirmations
            out["memberships"] = populated.memberships
            out["audit_entries"] = populated.audit_entries
            out["filter_members_per_kind"] = FILTER_MEMBERS
            app = create_app(engine, secure_cookies=False)
            pages: dict[str, float] = {}
            sizes: dict[str, int] = {}
            with serve_console(app) as base, _signed_in(base, populated.credential) as c:
                for label, path in _pages(populated, engine).items():
                    pages[label], sizes[label] = _best_ms(c, path, REPEATS)
                exports: dict[str, float] = {}
                export_bytes: dict[str, int] = {}
                for fmt in ("csv", "json", "stix"):
                    exports[fmt], export_bytes[fmt] = _best_ms(c, f"/export/{fmt}", EXPORT_REPEATS)
            with (
                serve_console(app, socket.create_server(("127.0.0.1", 0))) as base,
                _signed_in(base, populated.credential) as client,
            ):
                nagle_ms, _ = _best_ms(client, "/", REPEATS)
        finally:
            engine.dispose()
    slowest = max(pages, key=lambda label: pages[label])
    out.update(
        {
            "pages_ms": {label: round(ms, 1) for label, ms in pages.items()},
            "page_bytes": sizes,
            "max_page_ms": round(pages[slowest], 1),
            "slowest_page": slowest,
            "exports_ms": {fmt: round(ms, 1) for fmt, ms in exports.items()},
            "export_bytes": export_bytes,
            "overview_create_server_listener_ms": round(nagle_ms, 1),
        }
    )
    return out


BENCHMARKS = {"web": bench_web}


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    if "web" not in results or results["web"]["indicators"] < 50_000:
        return []
    result = results["web"]
    return [
        {
            "goal": "slowest console page, 50k indicators + 5k campaigns (ms)",
            "measured": result["max_page_ms"],
            "target": f"≤ {PAGE_GOAL_MS:g}",
            "met": result["max_page_ms"] <= PAGE_GOAL_MS,
        }
    ]


def print_table(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    if "web" not in results:
        return
    r = results["web"]
    table = Table(
        title=(
            f"web console: {r['indicators']:,} shared indicators ({r['confirmations']:,} "
            f"confirmations from {r['members']} members), {r['campaigns']:,} campaigns, "
            f"{r['audit_entries']:,} audit entries — best of {REPEATS}, keep-alive HTTP"
        ),
        title_justify="left",
    )
    table.add_column("page")
    table.add_column("ms", justify="right")
    table.add_column("KiB", justify="right")
    for label, ms in r["pages_ms"].items():
        table.add_row(label, f"{ms:.1f}", f"{r['page_bytes'][label] / 1024:.0f}")
    table.add_row(f"slowest page ({r['slowest_page']})", f"{r['max_page_ms']:.1f}", "")
    for fmt, ms in r["exports_ms"].items():
        table.add_row(
            f"export {fmt} (download, best of {EXPORT_REPEATS})",
            f"{ms:,.0f}",
            f"{r['export_bytes'][fmt] / 1024:,.0f}",
        )
    table.add_row(
        "overview behind a socket.create_server listener (as `sigshare-hub web` binds)",
        f"{r['overview_create_server_listener_ms']:.1f}",
        "",
    )
    table.add_row("populate the database", f"{r['populate_seconds'] * 1000:,.0f}", "")
    Console().print(table)
