"""A small forum's review records, seeded through the hub's services with known raw data.

Members m1-m4 submit keyed Bloom filters of known e-mail addresses and confirm the tokens of
those they share; m1-m3 submit prompt clusters of known templates. The raw values and prompt
texts are kept here so that tests can assert none of them reaches a page or an export, and the
exact answers (reporters, categories, dates, campaign members and volumes) so that tests can
assert exports to the byte.

A second, separate seed (:func:`seed_probing`) gives members submission histories with known
declared counts and numbers of tokens asked about, so that coordinators' probing flags have exact
expected values.

Nothing here is a fixture: test modules call :func:`seed_forum` or :func:`seed_probing` on the
engine of a database fixture, or serve the seeded forum with :func:`running_seeded_hub`.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from sigshare.hub.domain import Principal, RecordType, Submission
from sigshare.hub.listing import RecordQuery
from sigshare.hub.matching.membership import IndexCache
from sigshare.hub.services import member_views, resolution
from sigshare.hub.services.campaigns import refresh as refresh_campaigns
from sigshare.hub.services.parameters import minhash_parameters
from sigshare.hub.services.submissions import (
    UploadHeader,
    submit_bloom,
    submit_clusters,
)
from sigshare.hub.storage import session_scope
from sigshare.hub.storage.indicators import TokenConfirmation
from sigshare.hub.storage.principals import PrincipalRepository
from sigshare.hub.storage.reviews import ReviewRepository
from sigshare.sketch.cluster import ClusterInfo
from sigshare.sketch.codec import SketchFormat
from sigshare.sketch.prf import TokenArray
from tests.support.hub import (
    EMAIL,
    KEY_ID,
    MEMBERS,
    PROMPT,
    ClusterUpload,
    EmailForum,
    PromptForum,
    RunningHub,
    cluster_upload,
    email_prf,
    forum_secret,
    prompt_forum,
    provision,
    running_hub,
    upload_header,
)

SEEN = datetime(2026, 3, 1, 8, 30, 15, 123456, tzinfo=UTC)
"""Member i confirms with first seen SEEN + i days and last seen SEEN + 10 + i days."""
CLUSTER_FIRST_SEEN_DAYS = 20
CLUSTER_LAST_SEEN_DAYS = 40
"""Member i's prompt clusters: first seen SEEN + 20 + i days, last seen SEEN + 40 + i days."""
SEEDED_AT = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)

EMAILS: dict[str, tuple[str, ...]] = {
    "alice.rawvalue@example.com": ("m1", "m2"),
    "bob.rawvalue@example.org": ("m1", "m2", "m3"),
    "carol.rawvalue@example.net": ("m1",),
    "dave.rawvalue@example.com": ("m3", "m4"),
    "erin.rawvalue@example.com": ("m2",),
}
"""Raw values and the members holding them: three are shared at quorum 2."""
FILLERS = 40
"""Values only one member holds, per member: filters of a handful of items would fail the
hub's uniformity checks (too few bits for its chi-square tests)."""

CATEGORIES: dict[str, str] = {
    "m1": '=HYPERLINK("http://evil.example/x","click")',
    "m2": "account-farm",
    "m3": "+rotating, cards",
    "m4": "@risk",
}
"""Each member's confirmation category: three would run as spreadsheet formulas."""

PROMPT_PLAN: dict[str, tuple[int, ...]] = {"m1": (0, 1), "m2": (0, 2), "m3": (1,)}
"""Template 0 is seen by m1 and m2, template 1 by m1 and m3, template 2 by m2 alone."""
CLUSTER_CATEGORIES: dict[tuple[str, int], str] = {("m2", 0): "-extraction"}
"""Cluster categories other than ``t<template>``."""
PER_TEMPLATE = 9


@dataclass(frozen=True)
class SeededForum:
    emails: EmailForum
    prompts: PromptForum
    uploads: dict[str, ClusterUpload]
    value_of_id: dict[str, str]
    """Shared indicator id → the raw value behind it (found through its token)."""

    def holders(self, value: str) -> tuple[str, ...]:
        return EMAILS[value]

    @property
    def shared_values(self) -> list[str]:
        return sorted(v for v, holders in EMAILS.items() if len(holders) >= 2)

    def campaign_templates(self) -> dict[int, tuple[str, ...]]:
        """Template → its members, for templates at least two members hold."""
        found: dict[int, list[str]] = {}
        for member, templates in PROMPT_PLAN.items():
            for template in templates:
                found.setdefault(template, []).append(member)
        return {t: tuple(sorted(m)) for t, m in found.items() if len(m) >= 2}

    def forbidden_strings(self) -> list[str]:
        """What must never appear in anything shown or exported: raw values, tokens (hex and
        base64), prompt texts and the templates they share, members' cluster ids."""
        values = sorted(set().union(*self.emails.sets.values()))
        strings = [*values, *(value.upper() for value in values)]
        for value in values:
            token = self.emails.token(value)
            strings += [token.hex(), token.hex().upper(), base64.b64encode(token).decode()]
        for texts in self.prompts.prompts.values():
            strings += texts
        for prefix, suffix in self.prompts.templates:
            strings += [" ".join(prefix), " ".join(suffix), " ".join(prefix[:4])]
        for upload in self.uploads.values():
            strings += [cluster.cluster_id for cluster in upload.clusters]
        return strings

    def forbidden_bytes(self) -> list[bytes]:
        return [
            self.emails.token(value) for value in sorted(set().union(*self.emails.sets.values()))
        ]


def fillers(member: str) -> list[str]:
    return [f"{member}.filler{i:03d}.rawvalue@example.com" for i in range(FILLERS)]


def holders_of(value: str) -> tuple[str, ...]:
    if value in EMAILS:
        return EMAILS[value]
    return (value.split(".", 1)[0],)


def email_sets() -> dict[str, frozenset[str]]:
    return {
        member: frozenset(
            [*(v for v, holders in EMAILS.items() if member in holders), *fillers(member)]
        )
        for member in MEMBERS
    }


def _cluster_header(upload: ClusterUpload, digest: bytes) -> UploadHeader:
    return UploadHeader(
        format=SketchFormat.CLUSTERS_V1,
        kind=PROMPT,
        key_id=KEY_ID,
        params_digest=digest,
        declared_count=len(upload.clusters),
        content_length=len(upload.payload),
        content_sha256=hashlib.sha256(upload.payload).digest(),
    )


def seed_forum(
    engine: Engine,
    *,
    now: datetime = SEEDED_AT,
    confirmers: Sequence[str] = MEMBERS,
    provisioned: bool = False,
) -> SeededForum:
    """Provision the hub (unless ``provisioned``), then submit and confirm as described above."""
    if not provisioned:
        provision(engine, now=now)
    emails = EmailForum(email_sets(), email_prf(forum_secret()))
    prompts = prompt_forum(PROMPT_PLAN, per_template=PER_TEMPLATE)
    with session_scope(engine) as session:
        family = minhash_parameters(session, PROMPT)
        assert family is not None
        minhash = family.minhash_params()
    uploads = {m: cluster_upload(prompts, m, forum_secret(), minhash) for m in PROMPT_PLAN}
    with session_scope(engine) as session:
        members = {m: PrincipalRepository(session).get_by_name(m) for m in MEMBERS}
    cache = IndexCache()
    moment = now
    for member in MEMBERS:
        principal = members[member]
        assert principal is not None
        moment += timedelta(seconds=1)
        with session_scope(engine) as session:
            submit_bloom(
                session, principal, upload_header(emails, member), emails.payload(member), moment
            )
    for index, member in enumerate(MEMBERS):
        if member not in confirmers:
            continue
        principal = members[member]
        assert principal is not None
        offered = [v for v in sorted(emails.sets[member]) if len(holders_of(v)) >= 2]
        moment += timedelta(seconds=1)
        with session_scope(engine) as session:
            member_views.confirm(
                session,
                cache,
                principal,
                kind=EMAIL,
                key_id=KEY_ID,
                confirmations=[
                    TokenConfirmation(
                        token=emails.token(value),
                        category=CATEGORIES[member],
                        first_seen=SEEN + timedelta(days=index),
                        last_seen=SEEN + timedelta(days=10 + index),
                    )
                    for value in offered
                ],
                now=moment,
            )
    for member, upload in uploads.items():
        principal = members[member]
        assert principal is not None
        index = MEMBERS.index(member)
        moment += timedelta(seconds=1)
        with session_scope(engine) as session:
            submit_clusters(
                session,
                principal,
                _cluster_header(upload, minhash.digest()),
                signatures=upload.signatures,
                clusters=[
                    ClusterInfo(
                        cluster_id=c.cluster_id,
                        volume=c.volume,
                        category=CLUSTER_CATEGORIES.get(
                            (member, upload.template_of[c.cluster_id]), c.category
                        ),
                        first_seen=SEEN + timedelta(days=CLUSTER_FIRST_SEEN_DAYS + index),
                        last_seen=SEEN + timedelta(days=CLUSTER_LAST_SEEN_DAYS + index),
                        core_size=c.core_size,
                    )
                    for c in upload.clusters
                ],
                now=moment,
            )
    moment += timedelta(seconds=1)
    with session_scope(engine) as session:
        refresh_campaigns(session, moment)  # campaigns exist now, dated by the seed's clock
        listing = RecordQuery(RecordType.INDICATOR, descending=False, size=1000)
        records = ReviewRepository(session).indicators(listing).items
    value_of = emails.value_of()
    return SeededForum(
        emails=emails,
        prompts=prompts,
        uploads=uploads,
        value_of_id={record.id: value_of[record.token] for record in records},
    )


@contextmanager
def running_seeded_hub(engine: Engine) -> Iterator[tuple[RunningHub, SeededForum]]:
    """The forum of :func:`seed_forum` served by a started hub (stopped on exit), with the
    credentials of its admin, coordinator and members."""
    credentials = provision(engine, now=SEEDED_AT)
    forum = seed_forum(engine, provisioned=True)
    with running_hub(engine, credentials) as hub:
        yield hub, forum


def expected_categories(holders: Sequence[str]) -> list[str]:
    """The categories of a shared indicator its ``holders`` all confirmed."""
    return sorted({CATEGORIES[m] for m in holders})


def expected_campaign_seen(members: Sequence[str]) -> tuple[datetime, datetime]:
    """First and last seen of the campaign of ``members``' clusters: the earliest first seen
    and the latest last seen those members gave."""
    positions = [MEMBERS.index(m) for m in members]
    return (
        SEEN + timedelta(days=CLUSTER_FIRST_SEEN_DAYS + min(positions)),
        SEEN + timedelta(days=CLUSTER_LAST_SEEN_DAYS + max(positions)),
    )


# ---------------------------------------------------------------------------------- probing

PROBES: dict[str, tuple[tuple[int, int], ...]] = {
    "m1": ((40, 0), (250, 0)),
    "m2": ((60, 10), (61, 61)),
    "m3": ((50, 20), (55, 30)),
    "m4": ((45, 45),),
}
"""Member → its e-mail submissions in order, each as (values it holds, how many of them it then
asks the hub about). Each submission holds the previous one's values and more. Against the
previous submission, at the default flag factor 5: m1 declares 6.25× as many values; m2 asks
about 6.1× as many tokens; m3 rises 1.1× and 1.5×; m4 has no previous submission."""
PROBE_FLAGS: dict[str, tuple[str, ...]] = {
    "m1": ("declared_count_jump",),
    "m2": ("query_volume_jump",),
    "m3": (),
    "m4": (),
}


def probe_values(member: str, count: int) -> list[str]:
    return [f"{member}.probe{i:04d}.rawvalue@example.com" for i in range(count)]


def seed_probing(
    engine: Engine, *, now: datetime = SEEDED_AT, provisioned: bool = False
) -> dict[str, Submission]:
    """Provision the hub (unless ``provisioned``), then play :data:`PROBES` through the hub's
    services, one second apart: submissions with ``submit_bloom``, questions with
    ``resolution.resolve``. Returns each member's current submission (as stored when it was
    accepted: ``tokens_asked`` is counted afterwards)."""
    if not provisioned:
        provision(engine, now=now)
    prf = email_prf(forum_secret())
    cache = IndexCache()
    with session_scope(engine) as session:
        principals = {m: PrincipalRepository(session).get_by_name(m) for m in PROBES}
    current: dict[str, Submission] = {}
    moment = now
    for member, steps in PROBES.items():
        principal = principals[member]
        assert principal is not None
        for held, asked in steps:
            values = probe_values(member, held)
            forum = EmailForum({member: frozenset(values)}, prf)
            moment += timedelta(seconds=1)
            with session_scope(engine) as session:
                outcome = submit_bloom(
                    session, principal, upload_header(forum, member), forum.payload(member), moment
                )
            assert not outcome.duplicate
            current[member] = outcome.submission
            if asked:
                moment += timedelta(seconds=1)
                _ask(engine, cache, principal, prf.tokens(values[:asked]), moment)
    return current


def _ask(
    engine: Engine, cache: IndexCache, member: Principal, tokens: TokenArray, now: datetime
) -> None:
    with session_scope(engine) as session:
        answers = resolution.resolve(
            session, cache, member, kind=EMAIL, key_id=KEY_ID, tokens=tokens, now=now
        )
    assert answers.count(resolution.TokenStatus.ANSWERED) == len(tokens)
