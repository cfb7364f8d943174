"""The leak test: known raw values and prompts go through the whole flow, and none of them — nor
anything derived from them that only members may hold — reaches a console page, an export, a
``sigshare-hub review`` output or the hub's database.

Four members run the real member job (:class:`~sigshare.client.sync.SyncJob` over the SDK and a
real gRPC hub on loopback): each pushes its own spelling of e-mail addresses, phone numbers and
IP addresses (some held by several members) and prompts built from templates of invented marker
words, then pulls (the pull resolves the member's own tokens with the Resolve RPC), then confirms
every item it resolved. Shared indicators and campaigns exist at the hub afterwards;
coordinators review some of them through the console, and a coordinator decides others over
gRPC (``sigshare-hub review --hub``) with notes for members.

Then every console page is fetched (all listings under many filters, sorts and page sizes and
every page of them, every indicator and campaign, overlaps of every kind, the audit log under
every actor and action and every page of it, error pages), every export (CSV, JSON, STIX) from
the console and from ``sigshare-hub export``, and every ``sigshare-hub review … --json`` and
``audit show --json`` output (on the database and over gRPC), ``params show`` (with its
false-shared rates), ``review submissions``, ``member add``/``member list``, and every message
the hub sent back on a Resolve stream (each member asking about its own tokens of every kind,
names revealed for one kind). None may contain:

- a raw value in any member's spelling or its canonical form (also URL- and HTML-encoded);
- a prompt text, canonical or not, or any word of the prompt vocabulary (templates and fillers);
- a token of any member's item: hex, base64, base64url, or its 16 raw bytes;
- a member's cluster id.

What members receive with their matches (ListMatches) carries their own tokens and cluster
ids, the forum's status and the note for members: it may hold no raw value or prompt word,
nobody else's token or cluster id, no coordinator's own note, no assignee, and no other member's
name where the policy hides members.

Finally every text and blob column of every table of the hub database, and the database file's
bytes, must hold no raw value and no prompt word (tokens and cluster ids are what the hub
legitimately stores). The query ledgers are checked exactly: each member's ledger of a kind
holds the tokens of that member's own values of the kind, 16 bytes each, and nothing else. A
summary of what was checked is written to ``test-output/leak-test-coverage.json``.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import random
import re
import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine

from sigshare.client.hub_types import TokenStatus
from sigshare.client.inputs import RejectSink
from sigshare.client.state import LocalState
from sigshare.client.sync import SyncJob
from sigshare.client.wire import resolve_from_stream, resolve_requests
from sigshare.hub.cli import cli
from sigshare.hub.domain import RecordType, ReviewStatus
from sigshare.hub.listing import CampaignSort, IndicatorSort, RecordQuery
from sigshare.hub.matching.query_ledger import QueryLedger
from sigshare.hub.services import parameters, reviews
from sigshare.hub.storage import make_engine, migrate, session_scope
from sigshare.hub.storage.database import DATABASE_URL_ENV
from sigshare.hub.web import create_app
from sigshare.sketch.kinds import get_kind
from sigshare.sketch.prf import TOKEN_BYTES
from sigshare.v1 import hub_pb2 as pb
from sigshare.v1 import hub_pb2_grpc
from tests.support.console import serve_console
from tests.support.hub import (
    COORDINATOR,
    EMAIL,
    EMAIL_CAPACITY,
    EMAIL_FPR,
    KEY_ID,
    PROMPT,
    RPC_TIMEOUT,
    SETUP_ACTOR,
    forum_secret,
    provision,
    running_hub,
)

MEMBERS = ("alpha", "bravo", "charlie", "delta")
KINDS = (EMAIL, "phone", "ip")
ACCOUNTS = 120
"""Accounts per kind. Account ``j``'s holders follow ``j % 6`` (see :func:`_holders`)."""
REVEALED_KIND = "ip"
"""The one kind whose policy reveals reporters' names (so names do appear on its pages and in
Resolve answers)."""
CROWDED_KIND = "phone"
"""Sized for exactly the four members, so the fifth one ``sigshare-hub member add`` registers
makes ``member add`` and ``params show`` warn about the forum size."""
NEWCOMER = "echo"
RESOLVE_CHUNK = 4096
"""Bytes of tokens per Resolve request message: several messages per request."""
TEMPLATES: dict[int, tuple[str, ...]] = {
    0: ("alpha", "bravo"),
    1: ("bravo", "charlie", "delta"),
    2: ("alpha", "delta"),
    3: ("charlie",),
}
"""Prompt template → the members whose traffic holds it; templates 0-2 are campaigns."""
PER_TEMPLATE = 8
ORGANIC = 6
"""Unclustered prompts per member (each its own vocabulary)."""
GRAM = 8
"""Every forbidden string is at least this long; documents are searched by their 8-grams."""
COVERAGE = Path(__file__).resolve().parents[3] / "test-output" / "leak-test-coverage.json"
CATEGORIES = ("account-farm", "card-testing", "distillation")


# ---------------------------------------------------------------------------------- raw data


def _word(rng: random.Random, taken: set[str]) -> str:
    """A fresh invented marker word of 8-11 letters (never an English or HTML word)."""
    while True:
        word = "".join(
            rng.choice("bdfgklmnpqrstvxz") + rng.choice("aeiouy") for _ in range(rng.randint(4, 5))
        )
        word = word[: rng.randint(8, len(word))] + "q"
        if word not in taken:
            taken.add(word)
            return word


def _holders(account: int) -> tuple[str, ...]:
    pattern = account % 6
    if pattern == 0:
        return MEMBERS
    if pattern == 1:
        return ("alpha", "bravo")
    if pattern == 2:
        return ("bravo", "charlie", "delta")
    if pattern == 3:
        return ("alpha", "charlie")
    return (MEMBERS[(account // 6 + pattern) % len(MEMBERS)],)


def _planned(kind: str, account: int, words: list[str]) -> str:
    if kind == EMAIL:
        return f"{words[account]}.{account:03d}@{words[-1 - account % 7]}.example.com"
    if kind == "phone":
        return f"+447700900{account:03d}"
    if account % 2:
        return f"2001:db8:{account:x}:beef::{account + 7:x}"
    return f"203.0.{113 + account % 2}.{account}"


def _spell(kind: str, value: str, member: int) -> str:
    """Member ``member``'s own spelling of ``value`` (what its pipeline exports)."""
    style = member % 3
    if kind == EMAIL:
        local, domain = value.split("@")
        return [value, f"  {local.capitalize()}@{domain.upper()} ", f"{local}@{domain.title()}"][
            style
        ]
    if kind == "phone":
        national = value[3:]
        return [
            value,
            f"+44 {national[:4]} {national[4:]}",
            f"+44 ({national[:3]}) {national[3:6]}-{national[6:]}",
        ][style]
    if ":" in value and style:
        return value.upper()
    return value


@dataclass
class RawForum:
    """Every member's raw inputs, as written to its files."""

    indicators: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)
    """Member → ``(kind, spelled value, category)`` rows."""
    prompts: dict[str, list[str]] = field(default_factory=dict)
    words: set[str] = field(default_factory=set)
    """The whole prompt vocabulary (templates and fillers) and the e-mail marker words."""

    @staticmethod
    def shared_per_kind() -> int:
        """Accounts of one kind that at least two members hold (quorum 2)."""
        return sum(len(_holders(account)) >= 2 for account in range(ACCOUNTS))


def raw_forum() -> RawForum:
    rng = random.Random(424_242)  # reproducible test data
    taken: set[str] = set()
    forum = RawForum()
    email_words = [_word(rng, taken) for _ in range(ACCOUNTS + 8)]
    for index, member in enumerate(MEMBERS):
        rows = []
        for kind in KINDS:
            for account in range(ACCOUNTS):
                if member in _holders(account):
                    value = _spell(kind, _planned(kind, account, email_words), index)
                    rows.append((kind, value, CATEGORIES[account % len(CATEGORIES)]))
        forum.indicators[member] = rows
    templates = {
        t: ([_word(rng, taken) for _ in range(20)], [_word(rng, taken) for _ in range(16)])
        for t in TEMPLATES
    }
    for member in MEMBERS:
        texts = [
            " ".join([*prefix, *(_word(rng, taken) for _ in range(3)), *suffix])
            for t, (prefix, suffix) in templates.items()
            if member in TEMPLATES[t]
            for _ in range(PER_TEMPLATE)
        ]
        texts += [" ".join(_word(rng, taken) for _ in range(30)) for _ in range(ORGANIC)]
        rng.shuffle(texts)
        forum.prompts[member] = texts
    forum.words = taken
    return forum


def _write_inputs(directory: Path, forum: RawForum, member: str) -> tuple[Path, Path]:
    indicators = directory / f"{member}-indicators.csv"
    with indicators.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["kind", "value", "category", "first_seen", "last_seen"])
        for kind, value, category in forum.indicators[member]:
            writer.writerow([kind, value, category, "2026-10-01", "2026-11-15"])
    prompts = directory / f"{member}-prompts.jsonl"
    with prompts.open("w", encoding="utf-8") as handle:
        for text in forum.prompts[member]:
            handle.write(json.dumps({"text": text, "category": "distillation"}) + "\n")
    return indicators, prompts


# ---------------------------------------------------------------------------------- the flow


@dataclass
class Flowed:
    """The hub after the whole flow, and what the members hold that the hub must not show."""

    engine: Engine
    url: str
    db_path: Path
    credentials: dict[str, str]
    forum: RawForum
    tokens: set[bytes]
    cluster_ids: set[str]
    canonicals: set[str]
    own_tokens: dict[tuple[str, str], set[bytes]]
    """``(member, kind)`` → the tokens of the member's own values of that kind."""
    member_ids: dict[str, int]
    resolve_answers: dict[str, list[bytes]]
    """Label → the serialized messages the hub sent back on one Resolve stream."""
    own_cluster_ids: dict[str, set[str]]
    """Member → its own prompt clusters' ids."""


def _publish(engine: Engine) -> None:
    now = datetime.now(UTC)
    with session_scope(engine) as session:
        for kind in KINDS[1:]:
            parameters.set_kind_parameters(
                session,
                actor=SETUP_ACTOR,
                kind=kind,
                key_id=KEY_ID,
                capacity=EMAIL_CAPACITY,
                forum_fpr=EMAIL_FPR,
                max_members=len(MEMBERS) if kind == CROWDED_KIND else None,
                reveal_members=kind == REVEALED_KIND,
                now=now,
            )


@pytest.fixture(scope="module")
def flowed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flowed]:
    directory = tmp_path_factory.mktemp("leak")
    db_path = directory / "hub.db"
    url = f"sqlite:///{db_path}"
    migrate.upgrade(url)
    engine = make_engine(url)
    credentials = provision(engine, members=MEMBERS)
    _publish(engine)
    forum = raw_forum()
    secret = forum_secret()
    tokens: set[bytes] = set()
    cluster_ids: set[str] = set()
    canonicals: set[str] = set()
    own_tokens: dict[tuple[str, str], set[bytes]] = {}
    own_cluster_ids: dict[str, set[str]] = {}
    answers: dict[str, list[bytes]] = {}
    with running_hub(engine, credentials) as hub, ExitStack() as stack:
        jobs: dict[str, SyncJob] = {}
        for member in MEMBERS:
            home = directory / member
            home.mkdir(mode=0o700)
            state = stack.enter_context(LocalState.open(home / "state"))
            jobs[member] = SyncJob(
                client=hub.client(member), state=state, secret=secret, min_cluster_volume=3
            )
            indicator_file, prompt_file = _write_inputs(home, forum, member)
            with RejectSink(home / "rejects.jsonl") as rejects:
                report = jobs[member].push([indicator_file], [prompt_file], rejects=rejects)
            assert report.rejected == 0, f"{member}: rejected rows {report.rejects}"
        for job in jobs.values():
            job.pull()
        for member, job in jobs.items():
            resolved = job.state.resolved()
            assert resolved, f"{member} resolved nothing"
            outcome = job.confirm(resolved)
            assert all(result.accepted for result in outcome.values()), outcome
        for member, job in jobs.items():
            pulled = job.pull()
            assert pulled.campaigns >= 1, f"{member} is in no campaign"
            for kind in KINDS:
                values, kind_tokens = job.state.indicator_tokens(kind)
                canonicals.update(values)
                tokens.update(kind_tokens)
                own_tokens[(member, kind)] = set(kind_tokens)
                answers[f"Resolve {kind} as {member}"] = _resolve_answers(
                    hub.member_stub, hub.metadata(member), kind, kind_tokens
                )
            own_cluster_ids[member] = set(job.state.cluster_ids(PROMPT))
            cluster_ids.update(own_cluster_ids[member])
        member_ids = {member: hub.principal(member).id for member in MEMBERS}
    yield Flowed(
        engine,
        url,
        db_path,
        credentials,
        forum,
        tokens,
        cluster_ids,
        canonicals,
        own_tokens,
        member_ids,
        answers,
        own_cluster_ids,
    )
    engine.dispose()


def _resolve_answers(
    stub: hub_pb2_grpc.MemberServiceStub,
    metadata: tuple[tuple[str, str], ...],
    kind: str,
    tokens: list[bytes],
) -> list[bytes]:
    """Ask the hub about ``tokens`` (the member's own) on a raw Resolve stream; the messages it
    sent back, serialized, after checking they are a complete, well-formed answer: every token
    answered, holder names exactly where the kind's policy reveals members."""
    responses = list(
        stub.Resolve(
            resolve_requests(kind, KEY_ID, b"".join(tokens), RESOLVE_CHUNK),
            metadata=metadata,
            timeout=RPC_TIMEOUT,
        )
    )
    result = resolve_from_stream(responses, kind=kind, key_id=KEY_ID, count=len(tokens))
    assert result.count(TokenStatus.ANSWERED) == len(tokens), kind
    assert bool(result.holder_names) == (kind == REVEALED_KIND), result.holder_names
    assert result.others.any(), f"{kind}: no value held by others"
    return [response.SerializeToString() for response in responses]


# ---------------------------------------------------------------------------------- searching


@dataclass(frozen=True)
class Needle:
    what: str
    text: str


def _text_needles(flowed: Flowed) -> list[Needle]:
    """Raw values (every spelling, canonical form, URL and HTML encodings) and prompt data."""
    needles: list[Needle] = []
    for member, rows in flowed.forum.indicators.items():
        for kind, value, _ in rows:
            canonical = get_kind(kind).canonicalise(value)
            for form in {value.strip(), canonical}:
                needles += [
                    Needle(f"raw {kind} of {member}", variant)
                    for variant in {form, quote(form), quote_plus(form), html.escape(form)}
                ]
    for value in flowed.canonicals:
        needles.append(Needle("canonical value of a member", value))
    for member, texts in flowed.forum.prompts.items():
        for text in texts:
            needles.append(Needle(f"prompt of {member}", text))
            needles.append(Needle(f"prompt of {member} (URL-encoded)", quote_plus(text)))
    needles += [Needle("prompt or marker word", word) for word in sorted(flowed.forum.words)]
    return needles


def _secret_needles(flowed: Flowed) -> list[Needle]:
    """Tokens (hex, base64, base64url, padded or not) and members' cluster ids."""
    needles = []
    for token in flowed.tokens:
        for encoded in {
            token.hex(),
            base64.b64encode(token).decode(),
            base64.b64encode(token).decode().rstrip("="),
            base64.urlsafe_b64encode(token).decode().rstrip("="),
        }:
            needles.append(Needle("token of a member's item", encoded))
    needles += [Needle("member's cluster id", cid) for cid in sorted(flowed.cluster_ids)]
    return needles


class Searcher:
    """Finds any of many forbidden strings in many documents: each needle is indexed by its
    first :data:`GRAM` characters (case-folded), each document is reduced to the set of its
    own 8-grams, and only needles whose prefix occurs are checked in full."""

    def __init__(self, needles: Iterable[Needle], byte_needles: Iterable[bytes] = ()) -> None:
        self.needles = list(needles)
        self.by_prefix: dict[str, list[Needle]] = {}
        for needle in self.needles:
            assert len(needle.text) >= GRAM, needle
            self.by_prefix.setdefault(needle.text[:GRAM].lower(), []).append(needle)
        self.byte_needles = list(byte_needles)
        self.by_byte_prefix: dict[bytes, list[bytes]] = {}
        for raw in self.byte_needles:
            assert len(raw) >= GRAM
            self.by_byte_prefix.setdefault(raw[:GRAM], []).append(raw)

    def find(self, content: bytes | str) -> list[str]:
        data = content.encode() if isinstance(content, str) else content
        text = data.decode("utf-8", errors="replace").lower()
        grams = {text[i : i + GRAM] for i in range(len(text) - GRAM + 1)}
        found = [
            f"{needle.what}: {needle.text!r}"
            for prefix in grams & self.by_prefix.keys()
            for needle in self.by_prefix[prefix]
            if needle.text.lower() in text
        ]
        if self.by_byte_prefix:
            byte_grams = {data[i : i + GRAM] for i in range(len(data) - GRAM + 1)}
            found += [
                f"raw token bytes {raw.hex()[:8]}…"
                for prefix in byte_grams & self.by_byte_prefix.keys()
                for raw in self.by_byte_prefix[prefix]
                if raw in data
            ]
        return found


@dataclass
class Documents:
    """Everything fetched or produced, by label."""

    items: dict[str, bytes] = field(default_factory=dict)
    kinds: Counter[str] = field(default_factory=Counter)

    def add(self, label: str, content: bytes | str, kind: str) -> None:
        data = content.encode() if isinstance(content, str) else content
        unique, serial = label, 1
        while unique in self.items:
            serial += 1
            unique = f"{label} #{serial}"
        self.items[unique] = data
        self.kinds[kind] += 1


# ---------------------------------------------------------------------------------- the console


class ConsoleReader:
    """A signed-in coordinator's browser, minus the browser: every fetch is kept."""

    def __init__(self, base: str, documents: Documents) -> None:
        self.client = httpx.Client(base_url=base, follow_redirects=True, timeout=30)
        self.documents = documents
        self.csrf = ""

    def get(self, path: str, *, status: int = 200, kind: str = "page") -> str:
        response = self.client.get(path)
        assert response.status_code == status, f"{path}: {response.status_code}"
        self.documents.add(f"GET {path}", response.content, kind)
        return response.text

    def sign_in(self, credential: str) -> None:
        login = self.get("/login", kind="anonymous page")
        match = re.search(r'name="csrf" value="([^"]+)"', login)
        assert match
        response = self.client.post(
            "/login", data={"credential": credential, "csrf": match.group(1), "next": "/"}
        )
        assert response.status_code == 200, response.status_code
        assert response.url.path == "/", response.url
        self.documents.add("POST /login → /", response.content, "page")
        found = re.search(r'name="csrf" value="([^"]+)"', response.text)
        assert found
        self.csrf = found.group(1)

    def post(self, path: str, **data: str) -> str:
        response = self.client.post(path, data={"csrf": self.csrf, **data})
        assert response.status_code == 200, f"{path}: {response.status_code}"
        assert "flash-ok" in response.text, f"{path}: {response.text[:2000]}"
        self.documents.add(f"POST {path} {sorted(data)}", response.content, "page")
        return response.text

    def every_page(self, path: str, kind: str) -> list[str]:
        """``path`` and every page after it, following the ``rel="next"`` links
        (Next, or Older in the audit log)."""
        pages = [self.get(path, kind=kind)]
        while match := re.search(r'href="([^"]+)" rel="next"', pages[-1]):
            pages.append(self.get(html.unescape(match.group(1)), kind=kind))
            assert len(pages) < 500
        return pages


def _ids(page: str, section: str) -> set[str]:
    return set(re.findall(rf'href="/{section}/([0-9a-f]{{32}})"', page))


def _review_some(reader: ConsoleReader, indicators: list[str], campaigns: list[str]) -> None:
    """Coordinators' work, so that histories, assignees and the audit log have content."""
    for number, record in enumerate(indicators[:6]):
        reader.post(f"/records/{record}/status", status="triaged", note=f"triage note {number}")
        if number % 2:
            reader.post(f"/records/{record}/status", status="confirmed", note="confirmed")
        else:
            reader.post(f"/records/{record}/assign", assignee=COORDINATOR, note="taking it")
    reader.post(f"/records/{indicators[-1]}/status", status="dismissed", note="noise")
    for record in campaigns:
        reader.post(f"/records/{record}/assign", assignee=COORDINATOR)
        reader.post(f"/records/{record}/note", note="campaign under review")
    reader.post(f"/records/{campaigns[0]}/status", status="triaged")


def _read_console(flowed: Flowed, documents: Documents, base: str) -> tuple[set[str], set[str]]:
    reader = ConsoleReader(base, documents)
    reader.get("/", status=200, kind="anonymous page")  # redirected to the sign-in form
    reader.get("/login?next=%2Findicators", kind="anonymous page")
    reader.sign_in(flowed.credentials[COORDINATOR])

    indicator_ids: set[str] = set()
    for page in reader.every_page("/indicators?size=25", "listing"):
        indicator_ids |= _ids(page, "indicators")
    campaign_ids: set[str] = set()
    for page in reader.every_page("/campaigns?size=25", "listing"):
        campaign_ids |= _ids(page, "campaigns")
    _review_some(reader, sorted(indicator_ids), sorted(campaign_ids))

    reader.get("/overlaps")
    for kind in KINDS:
        reader.get(f"/overlaps?kind={kind}")
    indicator_sorts: tuple[IndicatorSort, ...] = (
        "created",
        "reporters",
        "last_seen",
        "status",
        "kind",
    )
    campaign_sorts: tuple[CampaignSort, ...] = (
        "created",
        "members",
        "volume",
        "similarity",
        "status",
    )
    statuses = [status.value for status in ReviewStatus]
    listings = [f"/indicators?sort={s}&order={o}" for s in indicator_sorts for o in ("asc", "desc")]
    listings += [f"/indicators?kind={k}" for k in KINDS]
    listings += [f"/indicators?status={s}" for s in statuses]
    listings += [f"/indicators?category={c}" for c in CATEGORIES]
    listings += [f"/indicators?assignee={COORDINATOR}", "/indicators?size=500"]
    listings += [f"/indicators?kind={k}&status=new&sort=reporters&order=asc&size=50" for k in KINDS]
    listings += [f"/campaigns?sort={s}&order={o}" for s in campaign_sorts for o in ("asc", "desc")]
    listings += [f"/campaigns?status={s}" for s in statuses]
    listings += [
        f"/campaigns?family={PROMPT}",
        "/campaigns?category=distillation",
        f"/campaigns?assignee={COORDINATOR}",
    ]
    for path in listings:
        pages = reader.every_page(path, "listing")
        indicator_ids |= {i for page in pages for i in _ids(page, "indicators")}
        campaign_ids |= {c for page in pages for c in _ids(page, "campaigns")}
    for record in sorted(indicator_ids):
        reader.get(f"/indicators/{record}", kind="detail page")
    for record in sorted(campaign_ids):
        reader.get(f"/campaigns/{record}", kind="detail page")

    audit = reader.every_page("/audit?size=25", "audit page")
    actors = {a for page in audit for a in re.findall(r'href="/audit\?actor=([^"&]+)', page)}
    actions = {a for page in audit for a in re.findall(r'href="/audit\?action=([^"&]+)', page)}
    assert {COORDINATOR, SETUP_ACTOR} <= {html.unescape(a) for a in actors}
    for actor in sorted(actors):
        reader.every_page(f"/audit?actor={html.unescape(actor)}", "audit page")
    for action in sorted(actions):
        reader.every_page(f"/audit?action={html.unescape(action)}", "audit page")
    reader.get("/audit?size=500", kind="audit page")

    reader.get("/export")
    for fmt in ("csv", "json", "stix"):
        reader.get(f"/export/{fmt}", kind="console export")
    reader.get("/indicators/" + "0" * 32, status=404, kind="error page")
    reader.get("/campaigns/not-an-id", status=404, kind="error page")
    reader.get("/no/such/page", status=404, kind="error page")
    reader.get("/indicators?status=bogus", status=400, kind="error page")
    reader.get("/overlaps?kind=nosuchkind", status=404, kind="error page")
    return indicator_ids, campaign_ids


# ---------------------------------------------------------------------------------- the CLI


def _run_cli(flowed: Flowed, documents: Documents, tmp_path: Path, records: Iterable[str]) -> None:
    def hub(*args: str, kind: str = "review --json") -> Result:
        result = CliRunner().invoke(cli, ["--db", flowed.url, *args])
        assert result.exit_code == 0, f"{args}: {result.output}"
        documents.add(f"sigshare-hub {' '.join(args)}", result.stdout + result.stderr, kind)
        return result

    crowded = f"{CROWDED_KIND}: the forum has {len(MEMBERS) + 1} members"
    assert hub("params", "show", kind="params (table)").stderr == ""
    hub("params", "show", "--json", kind="params --json")
    added = hub("member", "add", NEWCOMER, "--json", kind="member --json")
    [warning] = json.loads(added.stdout)["warnings"]
    assert warning.startswith(f"{crowded} but its filters are sized for {len(MEMBERS)}: ")
    assert hub("params", "show", kind="params (table)").stderr.startswith(f"warning: {crowded}")
    shown = json.loads(hub("params", "show", "--json", kind="params --json").stdout)
    assert [k["false_shared_rate"]["over_forum_size"] for k in shown["kinds"]] == [
        kind == CROWDED_KIND for kind in sorted(KINDS)
    ]
    hub("member", "list", "--json", kind="member --json")
    hub("member", "list", kind="member (table)")
    submissions = json.loads(hub("review", "submissions", "--json").stdout)["submissions"]
    assert len(submissions) == len(MEMBERS) * (len(KINDS) + 1)  # every kind, and prompt clusters
    assert sum(s["tokens_asked"] for s in submissions) == sum(map(len, flowed.own_tokens.values()))
    hub("review", "submissions", kind="review (table)")
    hub("review", "submissions", "--flagged", "--json")
    for kind in KINDS:
        hub("review", "submissions", "--kind", kind, "--json")
    hub("review", "overlaps", "--json")
    for kind in KINDS:
        hub("review", "overlaps", "--kind", kind, "--json")
    hub("review", "indicators", "--page-size", "500", "--json")
    hub("review", "indicators", "--page-size", "500", kind="review (table)")
    hub("review", "indicators", "--status", "triaged", "--sort", "reporters", "--asc", "--json")
    for kind in KINDS:
        hub("review", "indicators", "--kind", kind, "--page-size", "500", "--json")
    hub("review", "campaigns", "--json")
    hub("review", "campaigns", kind="review (table)")
    hub("review", "campaigns", "--sort", "volume", "--asc", "--json")
    for record in sorted(records):
        hub("review", "history", record, "--json")
    hub("audit", "show", "--page-size", "1000", "--json", kind="audit --json")
    for fmt in ("csv", "json", "stix"):
        out = tmp_path / f"export.{fmt}"
        hub("export", fmt, "--out", str(out), kind="export --json")
        documents.add(f"sigshare-hub export {fmt} (file)", out.read_bytes(), "CLI export")


# ---------------------------------------------------------------------------------- over gRPC

MEMBER_NOTE = "Forum verdict {number}: block and rate-limit it"
INTERNAL_NOTE = "coordinators-only remark {number}"
"""Coordinators' own notes: kept in the history, never sent to members."""


def _review_remotely(
    flowed: Flowed, documents: Documents, tmp_path: Path
) -> tuple[dict[str, bytes], dict[str, str]]:
    """A coordinator decides records over gRPC with notes for members (``sigshare-hub review
    --hub``), and reads every listing and history that way. Returns every member's ListMatches
    answer afterwards, serialized, and the note for members given to each decided record."""
    credential = tmp_path / "coordinator.credential"
    credential.write_text(flowed.credentials[COORDINATOR] + "\n")
    credential.chmod(0o600)
    with session_scope(flowed.engine) as session:
        fresh = reviews.indicators(
            session, RecordQuery(RecordType.INDICATOR, status=ReviewStatus.NEW, size=500)
        ).items
        new_campaigns = reviews.campaigns(
            session, RecordQuery(RecordType.CAMPAIGN, status=ReviewStatus.NEW, size=500)
        ).items
    notes: dict[str, str] = {}
    with running_hub(flowed.engine, flowed.credentials) as hub:
        remote = ["review", "--hub", hub.target, "--credential-file", str(credential)]
        remote.append("--insecure")

        def review(*args: str, kind: str = "review --hub --json") -> Result:
            result = CliRunner().invoke(cli, [*remote, *args])
            assert result.exit_code == 0, f"{args}: {result.output}"
            documents.add(f"sigshare-hub review --hub {' '.join(args)}", result.stdout, kind)
            return result

        for number, indicator in enumerate(fresh[:4]):
            notes[indicator.id] = MEMBER_NOTE.format(number=number)
            review("set-status", indicator.id, "triaged", "--json")
            review(
                "set-status",
                indicator.id,
                "confirmed" if number % 2 else "dismissed",
                "--note",
                INTERNAL_NOTE.format(number=number),
                "--member-note",
                notes[indicator.id],
                "--json",
            )
        for number, campaign in enumerate(new_campaigns[:2], start=10):
            notes[campaign.id] = MEMBER_NOTE.format(number=number)
            review("note", campaign.id, notes[campaign.id], "--for-members", "--json")
            review("note", campaign.id, INTERNAL_NOTE.format(number=number), "--json")
        review("indicators", "--page-size", "500", "--json")
        review("indicators", "--page-size", "500", kind="review --hub (table)")
        review("campaigns", "--json")
        review("campaigns", kind="review --hub (table)")
        review("overlaps", "--json")
        review("submissions", "--json")
        for record in sorted(notes):
            review("history", record, "--json")
            review("history", record, kind="review --hub (table)")
        answers = {
            member: hub.member_stub.ListMatches(
                pb.ListMatchesRequest(), metadata=hub.metadata(member), timeout=RPC_TIMEOUT
            ).SerializeToString()
            for member in MEMBERS
        }
    return answers, notes


def _check_members_answers(
    flowed: Flowed, answers: dict[str, bytes], notes: dict[str, str]
) -> None:
    """Each member's matches: the forum's verdict and note for members on what it reported,
    and nothing it may not hold (see the module's docstring)."""
    text_needles = _text_needles(flowed)
    internal = [Needle("coordinators' own note", INTERNAL_NOTE.format(number=n)) for n in range(20)]
    delivered: dict[str, str] = {}
    for member, raw in answers.items():
        own = set().union(*(flowed.own_tokens[(member, kind)] for kind in KINDS))
        others = [Needle("another member's token", token.hex()) for token in flowed.tokens - own]
        others += [
            Needle("another member's cluster id", cid)
            for cid in flowed.cluster_ids - flowed.own_cluster_ids[member]
        ]
        searcher = Searcher([*text_needles, *internal, *others], flowed.tokens - own)
        assert not searcher.find(raw), f"{member}'s matches: {searcher.find(raw)[:5]}"
        matches = pb.ListMatchesResponse.FromString(raw)
        for indicator in matches.indicators:
            assert indicator.token in own
            assert indicator.assignee == ""
            assert not indicator.HasField("created_at")
            if indicator.kind != REVEALED_KIND:
                assert list(indicator.reporter_names) == []
            assert indicator.member_note == notes.get(indicator.id, "")
            if indicator.member_note:
                delivered[indicator.id] = indicator.status
        for link in matches.campaigns:
            assert link.cluster_id in flowed.own_cluster_ids[member]
            assert list(link.other_member_names) == []  # the prompt family hides members
            assert link.member_note == notes.get(link.campaign_id, "")
            if link.member_note:
                delivered[link.campaign_id] = link.status
    assert set(delivered) == set(notes), "every note for members reached the record's members"
    decided = ["confirmed", "confirmed", "dismissed", "dismissed"]
    assert sorted(delivered.values()) == [*decided, "new", "new"]  # campaigns: notes alone


# ---------------------------------------------------------------------------------- the database


def _database_cells(db_path: Path) -> Iterator[tuple[str, bytes]]:
    """``(table.column, value)`` of every non-null text or blob cell of every table."""
    connection = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        tables = [
            row[0]
            for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        ]
        for table in tables:
            cursor = connection.execute(f'SELECT * FROM "{table}"')
            columns = [d[0] for d in cursor.description]
            for row in cursor:
                for column, value in zip(columns, row, strict=True):
                    if isinstance(value, str):
                        yield f"{table}.{column}", value.encode()
                    elif isinstance(value, bytes):
                        yield f"{table}.{column}", value
    finally:
        connection.close()


def _query_ledgers(flowed: Flowed) -> dict[tuple[str, str], tuple[int, set[bytes]]]:
    """``(member, kind)`` → the ledger row's entry count and the tokens its ``tokens`` column
    holds, cut into 16-byte pieces (the row must also decode as a ledger of that many entries)."""
    names = {member_id: name for name, member_id in flowed.member_ids.items()}
    connection = sqlite3.connect(f"file:{flowed.db_path}?mode=ro", uri=True)
    try:
        rows = connection.execute(
            "SELECT member_id, kind, entries, tokens, asked_at FROM query_ledgers"
        ).fetchall()
    finally:
        connection.close()
    ledgers = {}
    for member_id, kind, entries, tokens, asked_at in rows:
        assert len(QueryLedger.decode(tokens, asked_at)) == entries
        pieces = [tokens[i : i + TOKEN_BYTES] for i in range(0, len(tokens), TOKEN_BYTES)]
        assert len(pieces) * TOKEN_BYTES == len(tokens)
        ledgers[(names[member_id], kind)] = (len(pieces), set(pieces))
    return ledgers


# ---------------------------------------------------------------------------------- the test


def test_no_raw_value_prompt_token_or_cluster_id_leaves_the_members(
    flowed: Flowed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    monkeypatch.setattr("getpass.getuser", lambda: "operator")
    with session_scope(flowed.engine) as session:
        shared = reviews.indicators(session, RecordQuery(RecordType.INDICATOR, size=500))
        campaigns = reviews.campaigns(session, RecordQuery(RecordType.CAMPAIGN, size=500))
    by_kind = Counter(i.kind for i in shared.items)
    assert by_kind == {kind: flowed.forum.shared_per_kind() for kind in KINDS}, by_kind
    assert campaigns.total == sum(len(m) >= 2 for m in TEMPLATES.values())

    documents = Documents()
    with serve_console(create_app(flowed.engine, secure_cookies=False)) as base:
        indicator_ids, campaign_ids = _read_console(flowed, documents, base)
    assert indicator_ids == {i.id for i in shared.items}
    assert campaign_ids == {c.id for c in campaigns.items}
    _run_cli(flowed, documents, tmp_path, indicator_ids | campaign_ids)
    member_answers, member_notes = _review_remotely(flowed, documents, tmp_path)
    for label, messages in flowed.resolve_answers.items():
        for number, message in enumerate(messages):
            documents.add(f"{label}, message {number}", message, "Resolve answer")

    text_needles = _text_needles(flowed)
    secret_needles = _secret_needles(flowed)
    searcher = Searcher([*text_needles, *secret_needles], flowed.tokens)
    leaks = {
        label: found for label, data in documents.items.items() if (found := searcher.find(data))
    }
    assert not leaks, "raw data reached coordinators:\n" + "\n".join(
        f"{label}: {found[:5]}" for label, found in sorted(leaks.items())
    )

    _check_members_answers(flowed, member_answers, member_notes)

    # Sanity: the search does find what it looks for (a page quoting a raw value would fail).
    some_value = flowed.forum.indicators["alpha"][0][1]
    assert searcher.find(f"<td>{some_value.upper()}</td>")
    assert searcher.find(b"x" + next(iter(flowed.tokens)) + b"y")

    # The hub database: no raw value or prompt word in any cell, nor in the file's bytes.
    flowed.engine.dispose()  # the last connection folds the WAL into the file
    database = Searcher(text_needles)
    cells: Counter[str] = Counter()
    in_cells: dict[str, list[str]] = {}
    for where, value in _database_cells(flowed.db_path):
        cells[where] += 1
        if found := database.find(value):
            in_cells.setdefault(where, []).extend(found)
    assert not in_cells, f"raw data stored by the hub: {in_cells}"
    ledger_rows = len(flowed.own_tokens)
    assert cells["query_ledgers.tokens"] == ledger_rows, cells
    assert _query_ledgers(flowed) == {
        key: (len(tokens), tokens) for key, tokens in flowed.own_tokens.items()
    }
    files = [p for p in flowed.db_path.parent.glob("hub.db*") if p.is_file()]
    in_files = {p.name: found for p in files if (found := database.find(p.read_bytes()))}
    assert not in_files, f"raw data in the hub's database files: {in_files}"

    COVERAGE.parent.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {
        "documents": len(documents.items),
        "documents_by_kind": dict(sorted(documents.kinds.items())),
        "bytes_searched": sum(len(d) for d in documents.items.values()),
        "shared_indicators": shared.total,
        "campaigns": campaigns.total,
        "needles": dict(Counter(n.what.split(" of ")[0] for n in [*text_needles, *secret_needles])),
        "distinct_needles": len({n.text.lower() for n in [*text_needles, *secret_needles]}),
        "token_byte_needles": len(flowed.tokens),
        "resolve_streams": len(flowed.resolve_answers),
        "member_match_answers": len(member_answers),
        "notes_for_members": len(member_notes),
        "query_ledger_rows": ledger_rows,
        "database_cells": cells.total(),
        "database_cells_by_column": dict(sorted(cells.items())),
        "database_files": sorted(p.name for p in files),
    }
    COVERAGE.write_text(json.dumps(summary, indent=2) + "\n")


def test_raw_forum_is_what_the_test_claims() -> None:
    """The fixture's own promises: every forbidden string is long enough to be searched by
    8-grams, and no marker word occurs in the console's own templates and style sheet (a page
    showing one would be a leak, not the page's furniture)."""
    forum = raw_forum()
    assert all(len(word) >= GRAM for word in forum.words)
    web = Path(create_app.__code__.co_filename).parent
    furniture = " ".join(
        path.read_text(encoding="utf-8").lower()
        for path in [*web.glob("templates/*.html"), *web.glob("static/*.css")]
    )
    assert furniture
    assert not {word for word in forum.words if word in furniture}
    for member, rows in forum.indicators.items():
        assert len({kind for kind, _, _ in rows}) == len(KINDS), member
        assert all(len(value.strip()) >= GRAM for _, value, _ in rows)
