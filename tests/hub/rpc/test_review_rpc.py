"""The Review service end to end: the review workflow over gRPC (status, assignee, notes, notes
for members, history), listings with the CLI's filters, order and cursors, and the forum's
verdicts reaching the members who reported a record (ListMatches), on a seeded forum
(:mod:`tests.support.review_seed`) served by a real hub on loopback over SQLite and PostgreSQL.

Calls go through the coordinators' review client (:class:`ReviewClient`, which reads answers
back into domain values) and the raw stubs; answers are compared with what the services give
on the database, and the audit log is checked to name the calling principal.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from sqlalchemy import Engine

from sigshare.client.errors import HubAuthError, HubRejectedError
from sigshare.hub.domain import RecordType, ReviewStatus
from sigshare.hub.listing import Cursor, RecordQuery
from sigshare.hub.services import coordinator_views, reviews
from sigshare.hub.services.coordinator_views import SubmissionSummary
from sigshare.hub.services.exports import campaign_record, indicator_record
from sigshare.hub.storage import make_engine, session_scope
from sigshare.hub.storage.audit import AuditRepository
from sigshare.v1 import hub_pb2 as pb
from tests.support.hub import ADMIN, COORDINATOR, EMAIL, PROMPT, RPC_TIMEOUT, RunningHub
from tests.support.review_seed import EMAILS, SeededForum, running_seeded_hub


@dataclass(frozen=True)
class Seeded:
    hub: RunningHub
    forum: SeededForum

    def indicator_of(self, value: str) -> str:
        (found,) = [i for i, v in self.forum.value_of_id.items() if v == value]
        return found

    def campaign_of(self, members: tuple[str, ...]) -> str:
        """The id of the campaign whose members are exactly ``members``."""
        with session_scope(self.hub.engine) as session:
            page = reviews.campaigns(session, RecordQuery(RecordType.CAMPAIGN, size=1000))
        (found,) = [c.id for c in page.items if c.members == members]
        return found


@pytest.fixture
def seeded(database_url: str) -> Iterator[Seeded]:
    engine = make_engine(database_url)
    try:
        with running_seeded_hub(engine) as (hub, forum):
            yield Seeded(hub, forum)
    finally:
        engine.dispose()


def refusal(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    error: Any = caught.value  # the raised RpcError is also a grpc.Call
    return error.code(), error.details() or ""


def audited(engine: Engine, actor: str) -> list[tuple[str, str, dict[str, Any]]]:
    """``(action, target, details)`` of ``actor``'s audit entries, oldest first."""
    with session_scope(engine) as session:
        entries = AuditRepository(session).search(actor=actor, limit=1000)
    return [(e.action, e.target, e.details) for e in reversed(entries)]


# ---------------------------------------------------------------------------------- workflow


def test_the_workflow_over_grpc_is_recorded_under_the_callers_name(seeded: Seeded) -> None:
    hub = seeded.hub
    desk = hub.review_client(COORDINATOR)
    record = seeded.indicator_of("bob.rawvalue@example.org")

    triaged = desk.set_status(record, ReviewStatus.TRIAGED, note=None, member_note=None)
    assert (triaged.actor, triaged.change, triaged.note, triaged.member_note) == (
        COORDINATOR,
        "new → triaged",
        None,
        None,
    )
    confirmed = desk.set_status(
        record,
        ReviewStatus.CONFIRMED,
        note="three firms saw it",
        member_note="confirmed abuse: block this address",
    )
    assert (confirmed.record_type, confirmed.record_id, confirmed.kind.value) == (
        RecordType.INDICATOR,
        record,
        "status",
    )
    assert (confirmed.from_status, confirmed.to_status) == (
        ReviewStatus.TRIAGED,
        ReviewStatus.CONFIRMED,
    )
    assert (confirmed.note, confirmed.member_note) == (
        "three firms saw it",
        "confirmed abuse: block this address",
    )
    assigned = desk.assign(record, ADMIN, note="for the weekly call")
    assert (assigned.change, assigned.assignee, assigned.note) == (
        f"assigned to {ADMIN}",
        ADMIN,
        "for the weekly call",
    )
    noted = desk.add_note(record, "blocked at three gateways", for_members=True)
    assert (noted.change, noted.note, noted.member_note, noted.assignee) == (
        "note for members",
        None,
        "blocked at three gateways",
        ADMIN,
    )
    internal = desk.add_note(record, "asked m3 for the logs", for_members=False)
    assert (internal.change, internal.note, internal.member_note) == (
        "note",
        "asked m3 for the logs",
        None,
    )

    state, events = desk.history(record)
    assert (state.record_type, state.status, state.assignee, state.member_note) == (
        RecordType.INDICATOR,
        ReviewStatus.CONFIRMED,
        ADMIN,
        "blocked at three gateways",
    )
    assert events == [triaged, confirmed, assigned, noted, internal]
    with session_scope(hub.engine) as session:
        assert reviews.history(session, record) == (state, events)  # what the database holds

    target = f"indicator:{record}"
    assert audited(hub.engine, COORDINATOR) == [
        ("review.status", target, {"from": "new", "to": "triaged", "note": False}),
        (
            "review.status",
            target,
            {"from": "triaged", "to": "confirmed", "note": True, "member_note": True},
        ),
        ("review.assign", target, {"assignee": ADMIN}),
        ("review.note", target, {"for_members": True}),
        ("review.note", target, {}),
        ("review.history", target, {}),
    ]


def test_a_status_change_replaces_the_note_for_members(seeded: Seeded) -> None:
    desk = seeded.hub.review_client(COORDINATOR)
    campaign = seeded.campaign_of(("m1", "m2"))
    desk.add_note(campaign, "we are looking into it", for_members=True)
    assert desk.history(campaign)[0].member_note == "we are looking into it"
    desk.set_status(campaign, ReviewStatus.DISMISSED, note=None, member_note="a benchmark")
    assert desk.history(campaign)[0].member_note == "a benchmark"
    desk.set_status(campaign, ReviewStatus.TRIAGED, note="reopened", member_note=None)
    state, events = desk.history(campaign)
    assert (state.status, state.member_note) == (ReviewStatus.TRIAGED, None)
    assert [(e.change, e.member_note) for e in events] == [
        ("note for members", "we are looking into it"),
        ("new → dismissed", "a benchmark"),
        ("dismissed → triaged", None),
    ]


def test_refusals_come_back_with_the_services_messages(seeded: Seeded) -> None:
    hub = seeded.hub
    desk = hub.review_client(COORDINATOR)
    record = seeded.indicator_of("alice.rawvalue@example.com")
    cases = [
        (
            lambda: desk.set_status(record, ReviewStatus.CONFIRMED, note=None, member_note=None),
            "FAILED_PRECONDITION",
            f"indicator {record} is new; it can move to dismissed, triaged, not confirmed",
        ),
        (
            lambda: desk.history("0" * 32),
            "NOT_FOUND",
            f"indicator or campaign '{'0' * 32}' not found",
        ),
        (
            lambda: desk.add_note(record, "   ", for_members=True),
            "INVALID_ARGUMENT",
            "a note needs some text",
        ),
        (
            lambda: desk.set_status(record, ReviewStatus.TRIAGED, note=None, member_note="\x07"),
            "INVALID_ARGUMENT",
            "notes may not contain control characters",
        ),
    ]
    for call, status, message in cases:
        with pytest.raises(HubRejectedError) as caught:
            call()
        assert (caught.value.status, str(caught.value)) == (status, message)
    assert refusal(
        lambda: hub.review_stub.SetReviewStatus(
            pb.SetReviewStatusRequest(record_id=record, status=""),
            metadata=hub.metadata(COORDINATOR),
            timeout=RPC_TIMEOUT,
        )
    ) == (grpc.StatusCode.INVALID_ARGUMENT, "choose a status: triaged, confirmed or dismissed")
    with pytest.raises(HubRejectedError, match="no coordinator or admin named 'm1'"):
        desk.assign(record, "m1", note=None)
    state, events = desk.history(record)
    assert (state.status, state.assignee, state.member_note, events) == (
        ReviewStatus.NEW,
        None,
        None,
        [],
    )


def test_a_member_credential_is_refused_and_changes_nothing(seeded: Seeded) -> None:
    member = seeded.hub.review_client("m1")
    record = seeded.indicator_of("alice.rawvalue@example.com")
    before = audited(seeded.hub.engine, "m1")
    calls = [
        lambda: member.set_status(record, ReviewStatus.TRIAGED, note=None, member_note="x"),
        lambda: member.assign(record, COORDINATOR, note=None),
        lambda: member.add_note(record, "x", for_members=True),
        lambda: member.history(record),
        lambda: member.overlaps(None),
    ]
    for call in calls:
        with pytest.raises(HubAuthError) as caught:
            call()
        assert str(caught.value) == (
            "not authorised by the hub: role 'member' may not call this service"
        )
    assert seeded.hub.review_client(COORDINATOR).history(record)[1] == []
    assert audited(seeded.hub.engine, "m1") == before


# ---------------------------------------------------------------------------------- listings


def _queries(record_type: RecordType) -> list[RecordQuery]:
    sort = "reporters" if record_type is RecordType.INDICATOR else "volume"
    return [
        RecordQuery(record_type),
        RecordQuery(record_type, descending=False, size=1),
        RecordQuery(record_type, sort=sort, size=2),
        RecordQuery(record_type, status=ReviewStatus.TRIAGED),
        RecordQuery(record_type, assignee=COORDINATOR),
        RecordQuery(record_type, category="t1"),
        RecordQuery(record_type, scope=EMAIL if record_type is RecordType.INDICATOR else PROMPT),
    ]


def test_listings_answer_the_clis_filters_order_and_cursors(seeded: Seeded) -> None:
    hub = seeded.hub
    desk = hub.review_client(COORDINATOR)
    record = seeded.indicator_of("bob.rawvalue@example.org")
    campaign = seeded.campaign_of(("m1", "m3"))
    for target in (record, campaign):
        desk.set_status(target, ReviewStatus.TRIAGED, note=None, member_note=None)
        desk.assign(target, COORDINATOR, note=None)
    for query in _queries(RecordType.INDICATOR):
        cursor: Cursor | None = None
        while True:
            paged = RecordQuery(
                query.record_type,
                scope=query.scope,
                status=query.status,
                category=query.category,
                assignee=query.assignee,
                sort=query.sort,
                descending=query.descending,
                size=query.size,
                cursor=cursor,
            )
            remote = desk.indicators(paged)
            with session_scope(hub.engine) as session:
                local = reviews.indicators(session, paged)
            assert [indicator_record(i) for i in remote.items] == [
                indicator_record(i) for i in local.items
            ], paged
            assert (remote.total, remote.first, remote.next_cursor, remote.previous_cursor) == (
                local.total,
                local.first,
                local.next_cursor,
                local.previous_cursor,
            )
            if remote.next_cursor is None:
                break
            cursor = Cursor.decode(remote.next_cursor)
    for query in _queries(RecordType.CAMPAIGN):
        remote_campaigns = desk.campaigns(query)
        with session_scope(hub.engine) as session:
            local_campaigns = reviews.campaigns(session, query)
        assert [campaign_record(c) for c in remote_campaigns.items] == [
            campaign_record(c) for c in local_campaigns.items
        ], query
        assert (remote_campaigns.total, remote_campaigns.next_cursor) == (
            local_campaigns.total,
            local_campaigns.next_cursor,
        )
    triaged = desk.indicators(RecordQuery(RecordType.INDICATOR, status=ReviewStatus.TRIAGED))
    assert [(i.id, i.assignee) for i in triaged.items] == [(record, COORDINATOR)]


def test_a_listing_without_a_filter_is_every_record_oldest_first(seeded: Seeded) -> None:
    """What Review clients written before the filters were added get: unchanged."""
    hub = seeded.hub
    response = hub.review_stub.ListSharedIndicators(
        pb.ListSharedIndicatorsRequest(),
        metadata=hub.metadata(COORDINATOR),
        timeout=RPC_TIMEOUT,
    )
    with session_scope(hub.engine) as session:
        oldest_first = reviews.indicators(
            session, RecordQuery(RecordType.INDICATOR, descending=False)
        )
    assert [i.id for i in response.indicators] == [i.id for i in oldest_first.items]
    assert len(response.indicators) == len(seeded.forum.value_of_id) == response.total
    assert all(i.token == b"" for i in response.indicators)
    assert refusal(
        lambda: hub.review_stub.ListCampaigns(
            pb.ListCampaignsRequest(filter=pb.RecordFilter(sort="reporters")),
            metadata=hub.metadata(COORDINATOR),
            timeout=RPC_TIMEOUT,
        )
    ) == (grpc.StatusCode.INVALID_ARGUMENT, "cannot sort campaigns by 'reporters'")


def test_overlaps_and_submissions_answer_as_the_services_do(seeded: Seeded) -> None:
    hub = seeded.hub
    desk = hub.review_client(COORDINATOR)
    now = datetime.now(UTC)
    with session_scope(hub.engine) as session:
        local = coordinator_views.overlap_matrices(session, None, now)
        views = coordinator_views.submissions(session, "", flag_factor=1.5)
    remote = desk.overlaps(None)
    assert [m.kind for m in remote] == [m.kind for m in local] == [EMAIL]
    assert [m.members for m in remote] == [m.members for m in local]
    assert [m.estimate.tolist() for m in remote] == [m.estimate.tolist() for m in local]
    assert [m.stderr.tolist() for m in remote] == [m.stderr.tolist() for m in local]
    assert [m.kind for m in desk.overlaps(EMAIL)] == [EMAIL]
    assert desk.submissions(None, 1.5) == [SubmissionSummary.of(view) for view in views]
    with pytest.raises(HubRejectedError, match=r"the flag factor must be above 1, got 1\.0"):
        desk.submissions(None, 1.0)
    assert audited(hub.engine, COORDINATOR) == [
        ("review.overlap", "*", {}),
        ("review.overlap", EMAIL, {}),
        ("review.submissions", "*", {}),
        ("review.submissions", "*", {}),
    ]


# ---------------------------------------------------------------------------------- members


def test_verdicts_reach_the_members_who_reported_the_record(seeded: Seeded) -> None:
    hub = seeded.hub
    desk = hub.review_client(COORDINATOR)
    value = "bob.rawvalue@example.org"
    record = seeded.indicator_of(value)
    desk.set_status(record, ReviewStatus.TRIAGED, note=None, member_note=None)
    desk.set_status(
        record, ReviewStatus.CONFIRMED, note="internal only", member_note="block this address"
    )
    campaign = seeded.campaign_of(("m1", "m2"))
    desk.set_status(campaign, ReviewStatus.DISMISSED, note=None, member_note="a public benchmark")
    token = seeded.forum.emails.token(value)

    for member in ("m1", "m2", "m3", "m4"):
        matches = hub.client(member).list_matches()
        verdicts = {
            i.token: (i.status, i.member_note)
            for i in matches.indicators
            if i.status != ReviewStatus.NEW.value
        }
        reported = member in EMAILS[value]
        assert verdicts == ({token: ("confirmed", "block this address")} if reported else {})
        assert {i.token for i in matches.indicators} <= {
            seeded.forum.emails.token(v) for v, holders in EMAILS.items() if member in holders
        }
        linked = {
            (m.campaign_id, m.status, m.member_note)
            for m in matches.campaigns
            if m.campaign_id == campaign
        }
        in_campaign = member in ("m1", "m2")
        assert linked == ({(campaign, "dismissed", "a public benchmark")} if in_campaign else set())
    # The coordinators' own note and the assignee never reach members.
    raw = hub.member_stub.ListMatches(
        pb.ListMatchesRequest(), metadata=hub.metadata("m1"), timeout=RPC_TIMEOUT
    )
    assert b"internal only" not in raw.SerializeToString()
    assert all(i.assignee == "" and not i.HasField("created_at") for i in raw.indicators)


def test_history_reads_are_audited_only_once_found(seeded: Seeded) -> None:
    hub = seeded.hub
    desk = hub.review_client(COORDINATOR)
    with pytest.raises(HubRejectedError):
        desk.history("f" * 32)
    campaign = seeded.campaign_of(("m1", "m3"))
    before = datetime.now(UTC) - timedelta(seconds=5)
    desk.history(campaign)
    assert audited(hub.engine, COORDINATOR) == [("review.history", f"campaign:{campaign}", {})]
    with session_scope(hub.engine) as session:
        (entry,) = AuditRepository(session).search(actor=COORDINATOR, limit=10)
    assert entry.at >= before
