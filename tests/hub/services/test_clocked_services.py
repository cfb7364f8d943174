"""The hub's services called directly, where the gRPC edge cannot drive them: with a clock of
the test's choosing (cluster sets and filters expiring, the rolling day budget, the replace
interval) over a running hub on SQLite and PostgreSQL, or with concurrent sessions on
PostgreSQL. Every outcome is compared with exact answers computed from plain sets (see
:mod:`tests.support.hub`).
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from sigshare.client.errors import HubRejectedError
from sigshare.client.hub_types import TokenStatus
from sigshare.hub.domain import RecordType
from sigshare.hub.errors import PreconditionError
from sigshare.hub.listing import RecordQuery
from sigshare.hub.matching.membership import IndexCache
from sigshare.hub.services import member_views, parameters, resolution, reviews
from sigshare.hub.services.submissions import UploadHeader, submit_bloom
from sigshare.hub.services.submissions import submit_clusters as submit_cluster_set
from sigshare.hub.storage import session_scope
from sigshare.hub.storage.indicators import TokenConfirmation
from sigshare.hub.storage.reviews import ReviewRepository
from sigshare.sketch.cluster import ClusterInfo as ClusterRecord
from sigshare.sketch.codec import SketchFormat
from sigshare.sketch.prf import TokenArray
from tests.support.hub import (
    EMAIL,
    EMAIL_CAPACITY,
    EMAIL_FPR,
    KEY_ID,
    PROMPT,
    RPC_TIMEOUT,
    EmailForum,
    RunningHub,
    check_campaigns,
    cluster_upload,
    email_forum,
    forum_secret,
    ledger_entries,
    overlapping_sets,
    principal_named,
    prompt_forum,
    provision,
    resolution_reads,
    set_email_policy,
    submissions_listed,
    submit_clusters,
    submit_email,
    upload_header,
)


def test_expired_cluster_submissions_leave_their_campaigns(hub: RunningHub) -> None:
    forum = prompt_forum({"m1": (0, 1), "m2": (0, 2), "m3": (1, 2)})
    clients = {m: hub.client(m) for m in forum.plan}
    params = clients["m1"].get_parameters().minhash[PROMPT].minhash_params()
    uploads = {m: cluster_upload(forum, m, forum_secret(), params) for m in forum.plan}
    for member, upload in uploads.items():
        submit_clusters(clients[member], upload)
    check_campaigns(hub, clients, uploads, reveal=False)
    m1, m2 = hub.principal("m1"), hub.principal("m2")
    # m2 and m3 send the same clusters again 20 days later; m1's expire at 30 days.
    for member in ("m2", "m3"):
        upload = uploads[member].with_new_ids()
        header = UploadHeader(
            format=SketchFormat.CLUSTERS_V1,
            kind=PROMPT,
            key_id=KEY_ID,
            params_digest=params.digest(),
            declared_count=len(upload.clusters),
            content_length=len(upload.payload),
            content_sha256=hashlib.sha256(upload.payload).digest(),
        )
        principal = hub.principal(member)
        with session_scope(hub.engine) as session:
            submit_cluster_set(
                session,
                principal,
                header,
                signatures=upload.signatures,
                clusters=[
                    ClusterRecord(
                        cluster_id=c.cluster_id,
                        volume=c.volume,
                        category=c.category,
                        first_seen=None,
                        last_seen=None,
                        core_size=c.core_size,
                    )
                    for c in upload.clusters
                ],
                now=datetime.now(UTC) + timedelta(days=20),
            )
    later = datetime.now(UTC) + timedelta(days=31)
    with session_scope(hub.engine) as session:
        assert member_views.matches(session, m1, PROMPT, later).campaigns == []
        links = member_views.matches(session, m2, PROMPT, later).campaigns
        listing = RecordQuery(RecordType.CAMPAIGN, scope=PROMPT, descending=False)
        campaigns = reviews.campaigns(session, listing, later).items
    # Only template 2 (m2 and m3) is still a campaign.
    assert [c.members for c in campaigns] == [("m2", "m3")]
    assert [(link.other_member_count, link.campaign_id) for link in links] == [(1, campaigns[0].id)]


def test_an_expired_filter_no_longer_counts(hub: RunningHub) -> None:
    set_email_policy(hub.engine, retention_days=1)
    forum = email_forum({m: s for m, s in overlapping_sets().items() if m in ("m1", "m2")})
    start = datetime.now(UTC)
    submitted = submit_email(hub.client("m1"), forum, "m1")
    assert start + timedelta(days=1) <= submitted.expires_at
    assert submitted.expires_at <= datetime.now(UTC) + timedelta(days=1)
    m1, m2 = hub.principal("m1"), hub.principal("m2")
    # m2 submits half a day later: the service layer with a clock of our choosing.
    with session_scope(hub.engine) as session:
        submit_bloom(
            session,
            m2,
            upload_header(forum, "m2"),
            forum.payload("m2"),
            start + timedelta(hours=12),
        )
    shared_tokens = forum.prf.tokens(sorted(forum.shared(2)))
    assert len(shared_tokens) == 3 + 2 * 3 + 5  # from the blocks of m1-m2, two triples, all four
    cache = IndexCache()

    def resolve_at(member: str, tokens: TokenArray, at: datetime) -> resolution.Answers:
        with session_scope(hub.engine) as session:
            return resolution.resolve(
                session,
                cache,
                hub.principal(member),
                kind=EMAIL,
                key_id=KEY_ID,
                tokens=tokens,
                now=at,
            )

    def shared_counts(at: datetime) -> tuple[int, list[int]]:
        """Members with a live filter at ``at``, and m2's answers about the shared items."""
        answers = resolve_at("m2", shared_tokens, at)
        assert answers.count(resolution.TokenStatus.ANSWERED) == len(shared_tokens)
        return answers.members, answers.others.tolist()

    assert shared_counts(start + timedelta(hours=13)) == (2, [1] * len(shared_tokens))
    expired = start + timedelta(days=1, hours=1)
    assert shared_counts(expired) == (1, [0] * len(shared_tokens))
    with session_scope(hub.engine) as session:
        assert member_views.status(session, m1) == []
        assert [s.family_kind for s in member_views.status(session, m2)] == [EMAIL]
    with pytest.raises(PreconditionError, match="submit a filter of kind email"):
        resolve_at("m1", forum.prf.tokens(sorted(forum.sets["m1"])), expired)

    # Sending the same filter again after expiry brings it back, under its old id.
    with session_scope(hub.engine) as session:
        outcome = submit_bloom(
            session, m1, upload_header(forum, "m1"), forum.payload("m1"), expired
        )
    assert (outcome.duplicate, outcome.submission.id) == (False, submitted.submission_id)
    assert shared_counts(expired + timedelta(minutes=1)) == (2, [1] * len(shared_tokens))
    # Past m2's own expiry, m2 has nothing left to resolve against.
    with pytest.raises(PreconditionError, match="submit a filter of kind email"):
        resolve_at("m2", shared_tokens, start + timedelta(days=1, hours=13))


def test_members_confirming_one_token_at_once_make_it_shared_on_postgresql(
    postgres_engine: Engine,
) -> None:
    """Two replicas take two members' confirmations of the same token at the same moment.

    Each transaction must see the other's confirmation once it counts reporters: the second
    waits for the first, or the token is never shared (each saw one reporter) or both create
    its record (a unique violation).
    """
    forum = email_forum({m: s for m, s in overlapping_sets().items() if m in ("m1", "m2")})
    provision(postgres_engine)
    now = datetime.now(UTC)
    members = {m: principal_named(postgres_engine, m) for m in ("m1", "m2")}
    for member, principal in members.items():
        with session_scope(postgres_engine) as session:
            submit_bloom(
                session, principal, upload_header(forum, member), forum.payload(member), now
            )
    value = sorted(forum.shared(2))[0]
    cache = IndexCache()

    def confirm(session: Session, member: str) -> member_views.ConfirmOutcome:
        return member_views.confirm(
            session,
            cache,
            members[member],
            kind=EMAIL,
            key_id=KEY_ID,
            confirmations=[
                TokenConfirmation(
                    token=forum.token(value), category="", first_seen=None, last_seen=None
                )
            ],
            now=now,
        )

    second: list[member_views.ConfirmOutcome] = []

    def confirm_second() -> None:
        with session_scope(postgres_engine) as session:
            second.append(confirm(session, "m2"))

    with session_scope(postgres_engine) as session:
        first = confirm(session, "m1")
        assert (first.accepted, first.shared) == (1, 0)  # m2 has not confirmed yet
        thread = threading.Thread(target=confirm_second)
        thread.start()
        thread.join(timeout=1.0)  # runs up to the first transaction's locks
    thread.join(timeout=RPC_TIMEOUT)
    assert not thread.is_alive()
    assert [(o.accepted, o.shared) for o in second] == [(1, 1)]
    with session_scope(postgres_engine) as session:
        listing = RecordQuery(RecordType.INDICATOR, scope=EMAIL, descending=False)
        records = ReviewRepository(session).indicators(listing).items
    assert [(r.token, r.reporters) for r in records] == [(forum.token(value), 2)]


DAY = timedelta(days=1)
SMALL_CAPACITY = 60


def test_the_day_budget_caps_distinct_tokens_across_filters_and_frees_up_24_hours_later(
    hub: RunningHub,
) -> None:
    """Service layer, with a clock of our choosing: a member replacing its filter with new
    values gets no more than ``capacity`` distinct answers per rolling 24 hours."""
    t0 = datetime.now(UTC).replace(microsecond=0) + DAY  # the ledger keeps whole seconds
    with session_scope(hub.engine) as session:
        small = parameters.set_kind_parameters(
            session,
            actor="test",
            kind=EMAIL,
            key_id=KEY_ID,
            capacity=SMALL_CAPACITY,
            forum_fpr=EMAIL_FPR,
            now=t0,
        )
    assert small.replace_interval_seconds == 0  # as provisioned: replace at will
    first = [f"first{i:02d}@example.com" for i in range(40)]
    second = [f"second{i:02d}@example.com" for i in range(40)]
    sets = {"m1": frozenset(first), "m2": frozenset(first[::2] + second[::2])}
    forum_first = email_forum(sets)
    forum_second = email_forum(sets | {"m1": frozenset(second)})
    for forum in (forum_first, forum_second):
        forum.params = small.bloom_params()
    m1 = hub.principal("m1")
    cache = IndexCache()

    def submit(forum: EmailForum, member: str, at: datetime) -> int:
        with session_scope(hub.engine) as session:
            outcome = submit_bloom(
                session,
                hub.principal(member),
                upload_header(forum, member),
                forum.payload(member),
                at,
            )
        assert not outcome.duplicate
        return outcome.submission.id

    def ask(values: Sequence[str], at: datetime) -> resolution.Answers:
        """What the Resolve servicer does: answer, then audit the read in its own transaction."""
        with session_scope(hub.engine) as session:
            answers = resolution.resolve(
                session,
                cache,
                m1,
                kind=EMAIL,
                key_id=KEY_ID,
                tokens=forum_first.prf.tokens(list(values)),
                now=at,
            )
        with session_scope(hub.engine) as session:
            resolution.audit_answers(session, m1, answers, at)
        return answers

    def others(forum: EmailForum, values: Sequence[str]) -> list[int]:
        return [forum.others("m1", v) for v in values]

    submit(forum_first, "m2", t0)
    submit(forum_first, "m1", t0)
    asked_first = t0 + timedelta(minutes=1)
    answers = ask(first, asked_first)
    assert answers.status.tolist() == [TokenStatus.ANSWERED] * 40
    assert answers.others.tolist() == others(forum_first, first) == [1, 0] * 20
    assert (answers.day_tokens, answers.day_budget) == (40, SMALL_CAPACITY)

    # A new filter with 40 new values: a new submission budget, but only 20 left of the day's.
    replaced = submit(forum_second, "m1", t0 + timedelta(hours=1))
    asked_second = t0 + timedelta(hours=1, minutes=1)
    answers = ask(second, asked_second)
    half = [TokenStatus.ANSWERED] * 20 + [TokenStatus.OVER_BUDGET] * 20
    assert answers.status.tolist() == half  # the first 20 in request order
    assert answers.others.tolist() == others(forum_second, second[:20]) + [0] * 20
    assert (answers.submission_tokens, answers.submission_budget) == (20, 40)
    assert (answers.day_tokens, answers.day_budget) == (60, SMALL_CAPACITY)
    assert answers.budget_frees_at == asked_first + DAY
    # Over-budget tokens leave no trace, and asking again changes nothing until then.
    assert ledger_entries(hub, "m1") == 60
    for at in (asked_second + timedelta(hours=1), asked_first + DAY - timedelta(seconds=1)):
        again = ask(second, at)
        assert again.status.tolist() == half
        assert (again.submission_tokens, again.day_tokens) == (20, 60)
    assert ledger_entries(hub, "m1") == 60

    # 24 hours after the first filter's tokens were asked they leave the window.
    answers = ask(second, asked_first + DAY)
    assert answers.status.tolist() == [TokenStatus.ANSWERED] * 40
    assert answers.others.tolist() == others(forum_second, second)
    assert (answers.submission_tokens, answers.day_tokens) == (40, 40)
    assert answers.budget_frees_at is None
    assert submissions_listed(hub)["m1", replaced].tokens_asked == 40
    reads = resolution_reads(hub)
    assert [(r["answered"], r["over_budget"]) for r in reads] == [
        (40, 0),
        (20, 20),
        (20, 20),
        (20, 20),
        (40, 0),
    ]


def test_a_filter_is_replaced_at_most_once_per_replace_interval(hub: RunningHub) -> None:
    with session_scope(hub.engine) as session:
        parameters.set_kind_parameters(
            session,
            actor="test",
            kind=EMAIL,
            key_id=KEY_ID,
            capacity=EMAIL_CAPACITY,
            forum_fpr=EMAIL_FPR,
            replace_interval_seconds=3600,
            now=datetime.now(UTC),
        )
    first = email_forum({"m1": frozenset(f"a{i}@example.com" for i in range(10))})
    second = email_forum({"m1": frozenset(f"b{i}@example.com" for i in range(10))})
    m1 = hub.client("m1")
    current = submit_email(m1, first, "m1")
    _, own = m1.status()
    created = own[0].created_at
    assert created is not None

    with pytest.raises(HubRejectedError) as caught:
        submit_email(m1, second, "m1")
    allowed = (created + timedelta(hours=1)).isoformat(timespec="seconds")
    assert caught.value.status == "FAILED_PRECONDITION"
    assert "the forum allows one replacement per 3600 s" in caught.value.message
    assert f"send this one after {allowed}" in caught.value.message
    # Resending the current filter is free: it is a duplicate, not a replacement.
    again = submit_email(m1, first, "m1")
    assert (again.duplicate, again.submission_id) == (True, current.submission_id)
    assert [(s.id, s.created_at) for s in m1.status()[1]] == [(current.submission_id, created)]

    # At the service layer, with a clock of our choosing: not a second early, then accepted.
    member = hub.principal("m1")
    header, payload = upload_header(second, "m1"), second.payload("m1")
    with (
        session_scope(hub.engine) as session,
        pytest.raises(PreconditionError, match=re.escape(allowed)),
    ):
        submit_bloom(session, member, header, payload, created + timedelta(seconds=3599))
    with session_scope(hub.engine) as session:
        replaced = submit_bloom(session, member, header, payload, created + timedelta(hours=1))
    assert not replaced.duplicate
    assert replaced.submission.id != current.submission_id
    assert [s.id for s in m1.status()[1]] == [replaced.submission.id]
