"""The hub end to end: a real gRPC server on loopback over SQLite and PostgreSQL, driven through
the member SDK and the raw stubs, every outcome compared with exact answers computed from plain
sets (see :mod:`tests.support.hub`).

Filters are small (capacity 20,000, forum FPR 10⁻³ over 32 members: k = 15) and sets hold a few
dozen items, so a false positive has probability ≈ fill^k ≈ 10⁻⁴⁵ per filter and item: the
allowance derived from it is zero and every count is asserted exactly.
"""

from __future__ import annotations

import hashlib
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from sqlalchemy import Engine, func, select

from sigshare.client.errors import HubRejectedError
from sigshare.client.hub_client import HubClient
from sigshare.client.hub_types import (
    ConfirmedToken,
    ConfirmResult,
    ResolveResult,
    SharedIndicatorView,
    TokenStatus,
)
from sigshare.hub.services import parameters
from sigshare.hub.services.audit import verify_audit_log
from sigshare.hub.services.credentials import new_credential
from sigshare.hub.storage import make_engine, session_scope
from sigshare.hub.storage.audit import AuditRepository
from sigshare.hub.storage.models import ClusterRow, SubmissionPayloadRow, SubmissionRow
from sigshare.sketch.bloom import BloomFilter, BloomParams, KeyedBloomFilter
from sigshare.sketch.codec import SignatureSet, encode_bloom, encode_signatures
from sigshare.sketch.minhash import SaltedMinHasher
from sigshare.sketch.prf import tokens_to_bytes
from sigshare.v1 import hub_pb2 as pb
from tests.support.hub import (
    ADMIN,
    COORDINATOR,
    EMAIL,
    EMAIL_CAPACITY,
    EMAIL_FPR,
    KEY_ID,
    MAX_MEMBERS,
    MEMBERS,
    PROMPT,
    RPC_TIMEOUT,
    EmailForum,
    RunningHub,
    check_campaigns,
    cluster_upload,
    email_forum,
    email_params,
    false_positive_allowance,
    forum_secret,
    ledger_entries,
    overlapping_sets,
    prompt_forum,
    provision,
    resolution_reads,
    resolve_email,
    resolved_counts,
    running_hub,
    set_email_policy,
    set_prompt_policy,
    submissions_listed,
    submit_clusters,
    submit_email,
)

SEEN = datetime(2025, 3, 1, tzinfo=UTC)
"""First/last-seen dates members attach to confirmations: member i uses SEEN + i days and
SEEN + 10 + i days, so the dates a shared indicator reports name exactly its confirmers."""


def refusal(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    """The status code and message of a call that must fail."""
    with pytest.raises(grpc.RpcError) as caught:
        call()
    error: Any = caught.value  # the raised RpcError is also a grpc.Call
    return error.code(), error.details() or ""


def by_true_count(forum: EmailForum, member: str, counts: Mapping[str, int]) -> dict[int, set[int]]:
    """True number of other holders → the resolved counts seen for such items."""
    seen: dict[int, set[int]] = defaultdict(set)
    for value, count in counts.items():
        seen[forum.others(member, value)].add(count)
    return dict(seen)


def answers_of(result: ResolveResult) -> tuple[object, ...]:
    """Everything a Resolve answer tells the member, except when it was computed."""
    return (
        result.kind,
        result.key_id,
        result.quorum,
        result.members,
        result.status.tolist(),
        result.others.tolist(),
        result.holder_names,
        None if result.holders is None else result.holders.tolist(),
        result.submission_tokens,
        result.submission_budget,
        result.day_tokens,
        result.day_budget,
        result.budget_frees_at,
    )


def token_bytes(forum: EmailForum, values: Sequence[str]) -> bytes:
    """The concatenated tokens of ``values``, in order (what a Resolve stream carries)."""
    return b"".join(tokens_to_bytes(forum.prf.tokens(list(values))))


def resolve_stream(
    tokens: bytes = b"",
    *,
    kind: str = EMAIL,
    key_id: str = KEY_ID,
    token_count: int | None = None,
) -> list[pb.ResolveRequest]:
    """A Resolve header announcing ``token_count`` tokens (default: those sent), then
    ``tokens`` in chunks of three tokens."""
    count = len(tokens) // 16 if token_count is None else token_count
    header = pb.ResolveRequest(header=pb.ResolveHeader(kind=kind, key_id=key_id, token_count=count))
    return [
        header,
        *(pb.ResolveRequest(tokens=tokens[i : i + 48]) for i in range(0, len(tokens), 48)),
    ]


def raw_resolve(hub: RunningHub, member: str, chunks: Sequence[pb.ResolveRequest]) -> object:
    return list(
        hub.member_stub.Resolve(iter(chunks), metadata=hub.metadata(member), timeout=RPC_TIMEOUT)
    )


def offer(member: str, values: Sequence[str], forum: EmailForum) -> list[ConfirmedToken]:
    index = MEMBERS.index(member)
    return [
        ConfirmedToken(
            token=forum.token(value),
            category=f"cat-{member}",
            first_seen=SEEN + timedelta(days=index),
            last_seen=SEEN + timedelta(days=10 + index),
        )
        for value in values
    ]


def coordinator_indicators(hub: RunningHub, kind: str = "") -> list[pb.SharedIndicator]:
    """Every shared indicator a coordinator can page through (pages of 7)."""
    records: list[pb.SharedIndicator] = []
    token = ""
    while True:
        page = hub.review_stub.ListSharedIndicators(
            pb.ListSharedIndicatorsRequest(
                kind=kind, page=pb.PageRequest(page_size=7, page_token=token)
            ),
            metadata=hub.metadata(COORDINATOR),
            timeout=RPC_TIMEOUT,
        )
        records += page.indicators
        token = page.next_page_token
        if not token:
            return records


def check_indicator_views(
    hub: RunningHub,
    clients: Mapping[str, HubClient],
    forum: EmailForum,
    confirmers: Mapping[str, set[str]],
    *,
    quorum: int,
    reveal: bool,
) -> dict[str, str]:
    """Members' and coordinators' views of shared indicators against who confirmed what.

    Returns value → shared indicator id.
    """
    value_of = forum.value_of()
    shared = {v: frozenset(c) for v, c in confirmers.items() if len(c) >= quorum}
    ids: dict[str, str] = {}
    for member, client in clients.items():
        matches = client.list_matches()
        assert matches.campaigns == ()
        assert client.list_matches(EMAIL) == matches
        own: dict[str, SharedIndicatorView] = {value_of[i.token]: i for i in matches.indicators}
        assert len(own) == len(matches.indicators)
        # Only indicators the member confirmed itself, and all of those that are shared.
        assert set(own) == {v for v, who in shared.items() if member in who}
        for value, indicator in own.items():
            who = shared[value]
            positions = [MEMBERS.index(name) for name in who]
            assert indicator.kind == EMAIL
            assert indicator.reporters == len(who)
            assert indicator.categories == tuple(sorted(f"cat-{name}" for name in who))
            assert indicator.first_seen == SEEN + timedelta(days=min(positions))
            assert indicator.last_seen == SEEN + timedelta(days=10 + max(positions))
            assert indicator.status == "new"
            assert indicator.reporter_names == (tuple(sorted(who - {member})) if reveal else ())
            assert ids.setdefault(value, indicator.id) == indicator.id
    records = coordinator_indicators(hub)
    assert len(records) == len(shared)
    by_id = {record.id: record for record in records}
    assert set(by_id) == {ids[v] for v in shared if v in ids}
    assert len(by_id) == len(shared), "a shared indicator no member can see"
    for value, who in shared.items():
        record = by_id[ids[value]]
        assert record.token == b"", "coordinators must never receive tokens"
        assert record.kind == EMAIL
        assert record.reporters == len(who)
    return ids


# ---------------------------------------------------------------------------------- 1. Bloom


def test_resolutions_match_the_exact_oracle_at_quorum_2_then_3(hub: RunningHub) -> None:
    forum = email_forum()
    clients = {m: hub.client(m) for m in MEMBERS}
    for member in MEMBERS:
        result = submit_email(clients[member], forum, member)
        assert not result.duplicate
        assert result.health is not None
        assert result.health.set_bits == forum.bloom(member).set_bits()
        assert false_positive_allowance(forum, member) == 0  # fill^k ≈ 1e-27 per item

    for member in MEMBERS:
        answers = resolve_email(clients[member], forum, member)
        assert answers.members == len(MEMBERS)
        counts = resolved_counts(forum, member, answers, quorum=2)
        # Items nobody else holds resolve to 0, the others to exactly their other holders.
        assert by_true_count(forum, member, counts) == {0: {0}, 1: {1}, 2: {2}, 3: {3}}

    set_email_policy(hub.engine, quorum=3)
    for member in MEMBERS:
        # The quorum is policy, not part of the parameter digest: the filters stay valid.
        assert clients[member].get_parameters().bloom[EMAIL].quorum == 3
        assert submit_email(clients[member], forum, member).duplicate
    for member in MEMBERS:
        answers = resolve_email(clients[member], forum, member)
        assert answers.members == len(MEMBERS)
        counts = resolved_counts(forum, member, answers, quorum=3)
        # Items held by one other member (2 in all) now fall below the quorum and read 0.
        assert by_true_count(forum, member, counts) == {0: {0}, 1: {0}, 2: {2}, 3: {3}}


@pytest.mark.parametrize(
    ("quorum", "reveal"), [(2, False), (3, True)], ids=["quorum2-hidden", "quorum3-revealed"]
)
def test_confirmations_give_exactly_the_oracle_shared_indicators(
    hub: RunningHub, quorum: int, reveal: bool
) -> None:
    forum = email_forum()
    if (quorum, reveal) != (2, False):
        set_email_policy(hub.engine, quorum=quorum, reveal_members=reveal)
    clients = {m: hub.client(m) for m in MEMBERS}
    for member in MEMBERS:
        submit_email(clients[member], forum, member)
    counts = {
        m: resolved_counts(forum, m, resolve_email(clients[m], forum, m), quorum) for m in MEMBERS
    }

    # Probes are refused: values m1's own filter does not hold, however many others hold them...
    not_held = sorted(v for v in forum.sets["m2"] if forum.holders(v) == {"m2", "m3", "m4"})
    assert not forum.bloom("m1").contains(not_held).any()
    refused = ConfirmResult(accepted=0, shared=0, not_resolved=len(not_held), over_budget=0)
    assert clients["m1"].confirm(EMAIL, KEY_ID, offer("m1", not_held, forum)) == refused
    # ...and values m1 holds that fewer than quorum − 1 others' own filters hold.
    below = sorted(v for v in forum.sets["m1"] if forum.others("m1", v) < quorum - 1)
    assert len(below) == 8 + (3 * 3 if quorum == 3 else 0)  # m1's own block, and the pairs
    refused = ConfirmResult(accepted=0, shared=0, not_resolved=len(below), over_budget=0)
    assert clients["m1"].confirm(EMAIL, KEY_ID, offer("m1", below, forum)) == refused

    # Round 1: m1-m3 confirm everything they resolved, m4 every other item of it.
    confirmers: dict[str, set[str]] = defaultdict(set)
    resolved = {m: sorted(v for v, c in counts[m].items() if c >= 1) for m in MEMBERS}
    held_back = resolved["m4"][1::2]
    for member in MEMBERS:
        offered = [v for v in resolved[member] if not (member == "m4" and v in held_back)]
        for value in offered:
            confirmers[value].add(member)
        became_shared = sum(1 for v in offered if len(confirmers[v]) >= quorum)
        result = clients[member].confirm(EMAIL, KEY_ID, offer(member, offered, forum))
        assert result == ConfirmResult(len(offered), became_shared, 0)
    first = check_indicator_views(hub, clients, forum, confirmers, quorum=quorum, reveal=reveal)
    # Some indicators m4 holds are shared by the others already, yet m4 does not see them.
    assert any(len(confirmers[v]) >= quorum for v in held_back)

    # Round 2: m4 confirms the rest; now the shared set is exactly the oracle's.
    for value in held_back:
        confirmers[value].add("m4")
    result = clients["m4"].confirm(EMAIL, KEY_ID, offer("m4", held_back, forum))
    became_shared = sum(1 for v in held_back if len(confirmers[v]) >= quorum)
    assert result == ConfirmResult(len(held_back), became_shared, 0)
    final = check_indicator_views(hub, clients, forum, confirmers, quorum=quorum, reveal=reveal)
    assert {v: frozenset(c) for v, c in confirmers.items() if len(c) >= quorum} == forum.shared(
        quorum
    )
    assert set(final) == set(forum.shared(quorum))
    assert all(final[v] == i for v, i in first.items()), "indicator ids changed"


# ---------------------------------------------------------------------------------- 2. MinHash

PROMPT_PLAN = {"m1": (0, 1, 3), "m2": (0, 1, 2, 5), "m3": (0, 2, 4)}
"""Template 0 is seen by three members, 1 and 2 by two, 3-5 by one each."""


def test_campaigns_link_exactly_the_shared_templates_under_stable_ids(hub: RunningHub) -> None:
    forum = prompt_forum(PROMPT_PLAN)
    clients = {m: hub.client(m) for m in PROMPT_PLAN}
    params = clients["m1"].get_parameters().minhash[PROMPT].minhash_params()
    uploads = {m: cluster_upload(forum, m, forum_secret(), params) for m in PROMPT_PLAN}
    for member, upload in uploads.items():
        result = submit_clusters(clients[member], upload)
        assert not result.duplicate
        assert result.health is None
    assert forum.shared_templates() == {0, 1, 2}
    campaign_of = check_campaigns(hub, clients, uploads, reveal=False)

    # The next nightly run: the same clusters under new random ids keep their campaigns.
    first = submit_clusters(clients["m1"], uploads["m1"])
    assert first.duplicate
    uploads["m1"] = uploads["m1"].with_new_ids()
    renamed = submit_clusters(clients["m1"], uploads["m1"])
    assert not renamed.duplicate
    assert renamed.submission_id != first.submission_id
    assert check_campaigns(hub, clients, uploads, reveal=False) == campaign_of
    _, own = clients["m1"].status()
    assert [(s.id, s.kind, s.declared_count) for s in own] == [
        (renamed.submission_id, f"minhash:{PROMPT}", len(uploads["m1"].clusters))
    ]

    # Forum policy may reveal names; the campaigns are unchanged.
    set_prompt_policy(hub.engine, reveal_members=True)
    assert check_campaigns(hub, clients, uploads, reveal=True) == campaign_of

    # m3 no longer sees template 2: that campaign ends, the others keep their ids.
    uploads["m3"] = uploads["m3"].without(2)
    assert not submit_clusters(clients["m3"], uploads["m3"]).duplicate
    remaining = check_campaigns(hub, clients, uploads, reveal=True)
    assert remaining == {t: campaign_of[t] for t in (0, 1)}


def test_campaign_ids_survive_a_nightly_run_in_which_every_member_resubmits(
    hub: RunningHub,
) -> None:
    """Every member's nightly job sends its clusters under fresh random ids, typically before
    anyone reads matches: the campaigns (and the review state attached to their ids) must carry
    over, since the clusters and their signatures are the same."""
    forum = prompt_forum(PROMPT_PLAN)
    clients = {m: hub.client(m) for m in PROMPT_PLAN}
    params = clients["m1"].get_parameters().minhash[PROMPT].minhash_params()
    uploads = {m: cluster_upload(forum, m, forum_secret(), params) for m in PROMPT_PLAN}
    for member, upload in uploads.items():
        submit_clusters(clients[member], upload)
    campaign_of = check_campaigns(hub, clients, uploads, reveal=False)

    for member in PROMPT_PLAN:
        uploads[member] = uploads[member].with_new_ids()
        assert not submit_clusters(clients[member], uploads[member]).duplicate
    assert check_campaigns(hub, clients, uploads, reveal=False) == campaign_of


# ---------------------------------------------------------------------------------- 3. auth


def member_calls(hub: RunningHub) -> dict[str, Callable[[Any], object]]:
    stub = hub.member_stub
    return {
        "GetParameters": lambda md: stub.GetParameters(
            pb.GetParametersRequest(), metadata=md, timeout=RPC_TIMEOUT
        ),
        "Submit": lambda md: stub.Submit(
            iter([pb.SubmitChunk(header=pb.SubmitHeader())]), metadata=md, timeout=RPC_TIMEOUT
        ),
        "Resolve": lambda md: list(
            stub.Resolve(iter(resolve_stream()), metadata=md, timeout=RPC_TIMEOUT)
        ),
        "Confirm": lambda md: stub.Confirm(
            pb.ConfirmRequest(kind=EMAIL, key_id=KEY_ID), metadata=md, timeout=RPC_TIMEOUT
        ),
        "ListMatches": lambda md: stub.ListMatches(
            pb.ListMatchesRequest(), metadata=md, timeout=RPC_TIMEOUT
        ),
        "GetStatus": lambda md: stub.GetStatus(
            pb.GetStatusRequest(), metadata=md, timeout=RPC_TIMEOUT
        ),
    }


def review_calls(hub: RunningHub) -> dict[str, Callable[[Any], object]]:
    stub = hub.review_stub
    return {
        "GetOverlapMatrix": lambda md: stub.GetOverlapMatrix(
            pb.OverlapRequest(kind=EMAIL), metadata=md, timeout=RPC_TIMEOUT
        ),
        "ListSharedIndicators": lambda md: stub.ListSharedIndicators(
            pb.ListSharedIndicatorsRequest(), metadata=md, timeout=RPC_TIMEOUT
        ),
        "ListCampaigns": lambda md: stub.ListCampaigns(
            pb.ListCampaignsRequest(), metadata=md, timeout=RPC_TIMEOUT
        ),
        "ListSubmissions": lambda md: stub.ListSubmissions(
            pb.ListSubmissionsRequest(), metadata=md, timeout=RPC_TIMEOUT
        ),
        "GetOverlapMatrices": lambda md: stub.GetOverlapMatrices(
            pb.OverlapRequest(), metadata=md, timeout=RPC_TIMEOUT
        ),
        "SetReviewStatus": lambda md: stub.SetReviewStatus(
            pb.SetReviewStatusRequest(record_id="0" * 32, status="triaged", member_note="x"),
            metadata=md,
            timeout=RPC_TIMEOUT,
        ),
        "AssignReview": lambda md: stub.AssignReview(
            pb.AssignReviewRequest(record_id="0" * 32, assignee=COORDINATOR),
            metadata=md,
            timeout=RPC_TIMEOUT,
        ),
        "AddReviewNote": lambda md: stub.AddReviewNote(
            pb.AddReviewNoteRequest(record_id="0" * 32, note="x", for_members=True),
            metadata=md,
            timeout=RPC_TIMEOUT,
        ),
        "GetReviewHistory": lambda md: stub.GetReviewHistory(
            pb.GetReviewHistoryRequest(record_id="0" * 32), metadata=md, timeout=RPC_TIMEOUT
        ),
    }


def key_calls(hub: RunningHub) -> dict[str, Callable[[Any], object]]:
    stub = hub.key_stub
    return {
        "RegisterKeys": lambda md: stub.RegisterKeys(
            pb.RegisterKeysRequest(), metadata=md, timeout=RPC_TIMEOUT
        ),
        "GetKeyStatus": lambda md: stub.GetKeyStatus(
            pb.GetKeyStatusRequest(), metadata=md, timeout=RPC_TIMEOUT
        ),
        "FetchEnvelopes": lambda md: stub.FetchEnvelopes(
            pb.FetchEnvelopesRequest(), metadata=md, timeout=RPC_TIMEOUT
        ),
        "ListCustodians": lambda md: stub.ListCustodians(
            pb.ListCustodiansRequest(), metadata=md, timeout=RPC_TIMEOUT
        ),
    }


def custodian_calls(hub: RunningHub) -> dict[str, Callable[[Any], object]]:
    stub = hub.custodian_stub
    return {
        "ListRecipients": lambda md: stub.ListRecipients(
            pb.ListRecipientsRequest(), metadata=md, timeout=RPC_TIMEOUT
        ),
        "UploadEnvelopes": lambda md: stub.UploadEnvelopes(
            pb.UploadEnvelopesRequest(key_id="epoch-9"), metadata=md, timeout=RPC_TIMEOUT
        ),
    }


def admin_calls(hub: RunningHub) -> dict[str, Callable[[Any], object]]:
    stub = hub.admin_stub
    return {
        "AddPrincipal": lambda md: stub.AddPrincipal(
            pb.AddPrincipalRequest(name="intruder", role=pb.ROLE_ADMIN),
            metadata=md,
            timeout=RPC_TIMEOUT,
        ),
        "ListPrincipals": lambda md: stub.ListPrincipals(
            pb.ListPrincipalsRequest(), metadata=md, timeout=RPC_TIMEOUT
        ),
        "RevokePrincipal": lambda md: stub.RevokePrincipal(
            pb.RevokePrincipalRequest(name="m1"), metadata=md, timeout=RPC_TIMEOUT
        ),
        "RotatePrincipal": lambda md: stub.RotatePrincipal(
            pb.RotatePrincipalRequest(name="m1"), metadata=md, timeout=RPC_TIMEOUT
        ),
        "SetParameters": lambda md: stub.SetParameters(
            pb.SetParametersRequest(
                bloom=[
                    pb.BloomParameters(
                        kind=EMAIL, key_id="epoch-9", capacity=EMAIL_CAPACITY, forum_fpr=0.5
                    )
                ]
            ),
            metadata=md,
            timeout=RPC_TIMEOUT,
        ),
        "VerifyAudit": lambda md: stub.VerifyAudit(
            pb.VerifyAuditRequest(), metadata=md, timeout=RPC_TIMEOUT
        ),
    }


def test_every_rpc_refuses_missing_malformed_unknown_and_revoked_credentials(
    hub: RunningHub,
) -> None:
    calls = {
        **member_calls(hub),
        **review_calls(hub),
        **admin_calls(hub),
        **key_calls(hub),
        **custodian_calls(hub),
    }
    assert set(calls) == {
        method.name
        for service in pb.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    }, "every RPC is called here"
    member_token = hub.credentials["m1"]
    unknown = new_credential().token  # well-formed, never issued
    secret = unknown.split("_", 2)[2]  # sgs1_<id>_<secret>; the secret may contain "_"
    wrong_secret = member_token[: -len(secret)] + secret
    missing: list[tuple[tuple[str, str], ...]] = [
        (),
        (("authorization", "Bearer"),),
        (("authorization", f"Basic {member_token}"),),
        (("x-api-key", member_token),),
    ]
    refused = [
        (("authorization", "Bearer not-a-credential"),),
        (("authorization", f"Bearer {unknown}"),),
        (("authorization", f"Bearer {wrong_secret}"),),
        (("authorization", f"Bearer {member_token}x"),),
    ]
    for name, call in calls.items():
        for metadata in missing:
            assert refusal(partial(call, metadata)) == (
                grpc.StatusCode.UNAUTHENTICATED,
                "missing bearer credential",
            ), (name, metadata)
        for metadata in refused:
            assert refusal(partial(call, metadata)) == (
                grpc.StatusCode.UNAUTHENTICATED,
                "unknown or revoked credential",
            ), (name, metadata)

    # Revocation takes effect on the very next call, for members and coordinators alike.
    assert hub.client("m3").status() == ("m3", [])
    hub.review_stub.ListSubmissions(
        pb.ListSubmissionsRequest(), metadata=hub.metadata(COORDINATOR), timeout=RPC_TIMEOUT
    )
    for revoked in ("m3", COORDINATOR):
        hub.admin_stub.RevokePrincipal(
            pb.RevokePrincipalRequest(name=revoked),
            metadata=hub.metadata(ADMIN),
            timeout=RPC_TIMEOUT,
        )
    for revoked, own_calls in (
        ("m3", {**member_calls(hub), **key_calls(hub)}),
        (COORDINATOR, review_calls(hub)),
    ):
        for name, call in own_calls.items():
            assert refusal(partial(call, hub.metadata(revoked))) == (
                grpc.StatusCode.UNAUTHENTICATED,
                "unknown or revoked credential",
            ), (revoked, name)
    # Nothing the refused calls asked for happened.
    principals = hub.admin_stub.ListPrincipals(
        pb.ListPrincipalsRequest(), metadata=hub.metadata(ADMIN), timeout=RPC_TIMEOUT
    ).principals
    assert [(p.name, p.HasField("revoked_at")) for p in principals] == [
        (ADMIN, False),
        (COORDINATOR, True),
        ("m1", False),
        ("m2", False),
        ("m3", True),
        ("m4", False),
    ]


def test_roles_are_confined_to_their_services(hub: RunningHub) -> None:
    denied = {
        "m1": {**review_calls(hub), **admin_calls(hub)},
        COORDINATOR: {**member_calls(hub), **admin_calls(hub)},
        ADMIN: member_calls(hub),
    }
    roles = {"m1": "member", COORDINATOR: "coordinator", ADMIN: "admin"}
    for principal, calls in denied.items():
        for name, call in calls.items():
            code, message = refusal(partial(call, hub.metadata(principal)))
            assert code == grpc.StatusCode.PERMISSION_DENIED, (principal, name)
            assert message == f"role {roles[principal]!r} may not call this service"
    principals = hub.admin_stub.ListPrincipals(
        pb.ListPrincipalsRequest(), metadata=hub.metadata(ADMIN), timeout=RPC_TIMEOUT
    ).principals
    assert [p.name for p in principals] == [ADMIN, COORDINATOR, *MEMBERS]
    assert not any(p.HasField("revoked_at") for p in principals)
    parameters = hub.client("m1").get_parameters().bloom[EMAIL]
    assert (parameters.key_id, parameters.forum_fpr, parameters.max_members) == (
        KEY_ID,
        EMAIL_FPR,
        MAX_MEMBERS,
    )
    assert parameters.capacity == EMAIL_CAPACITY


def test_health_is_open_and_reflection_needs_a_credential(hub: RunningHub) -> None:
    for service in ("", "sigshare.v1.MemberService", "sigshare.v1.ReviewService"):
        health: Any = hub.health_stub  # grpc_health ships no type stubs
        response = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=RPC_TIMEOUT)
        assert response.status == health_pb2.HealthCheckResponse.SERVING
    reflection: Any = reflection_pb2_grpc.ServerReflectionStub(hub.channel)  # no type stubs

    def list_services(metadata: tuple[tuple[str, str], ...]) -> list[str]:
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        responses = reflection.ServerReflectionInfo(iter([request]), metadata=metadata)
        return [s.name for r in responses for s in r.list_services_response.service]

    assert refusal(lambda: list_services(()))[0] == grpc.StatusCode.UNAUTHENTICATED
    assert "sigshare.v1.MemberService" in list_services(hub.metadata("m2"))


def test_a_member_learns_only_about_its_own_submission(hub: RunningHub) -> None:
    forum = email_forum({m: s for m, s in overlapping_sets().items() if m in ("m1", "m2")})
    m1, m2 = hub.client("m1"), hub.client("m2")
    submit_email(m1, forum, "m1")
    shared_token = forum.token(sorted(forum.shared(2))[0])

    # m2 has submitted nothing: no resolution (answers are only about a member's own values)
    # and no confirmation.
    code, message = refusal(lambda: raw_resolve(hub, "m2", resolve_stream(shared_token)))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert "submit a filter of kind email before resolving it" in message
    code, message = refusal(
        lambda: hub.member_stub.Confirm(
            pb.ConfirmRequest(
                kind=EMAIL, key_id=KEY_ID, tokens=[pb.ConfirmedToken(token=shared_token)]
            ),
            metadata=hub.metadata("m2"),
        )
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert "submit a filter of kind email" in message
    # Another key epoch or an unknown kind is refused for m1 too.
    code, message = refusal(
        lambda: raw_resolve(hub, "m1", resolve_stream(shared_token, key_id="epoch-0"))
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert "'epoch-0' is not the forum's current key id 'epoch-1'" in message
    with pytest.raises(HubRejectedError, match="indicator kind 'phone' is not enabled"):
        m1.resolve("phone", KEY_ID, shared_token)

    # Once both submitted and confirmed, members get their tokens back, coordinators never.
    submit_email(m2, forum, "m2")
    confirmers: dict[str, set[str]] = defaultdict(set)
    for member, client in (("m1", m1), ("m2", m2)):
        counts = resolved_counts(forum, member, resolve_email(client, forum, member), 2)
        resolved = sorted(v for v, c in counts.items() if c)
        assert client.confirm(EMAIL, KEY_ID, offer(member, resolved, forum)).accepted == len(
            resolved
        )
        for value in resolved:
            confirmers[value].add(member)
    ids = check_indicator_views(
        hub, {"m1": m1, "m2": m2}, forum, confirmers, quorum=2, reveal=False
    )
    assert set(ids) == set(forum.shared(2))
    assert len(ids) == 3 + 2 * 3 + 5  # the m1-m2 block, two triples, all four
    records = coordinator_indicators(hub, EMAIL)
    assert [r.token for r in records] == [b""] * len(ids)


# ---------------------------------------------------------------------------------- 4. Submit


def submit_stream(
    payload: bytes,
    *,
    count: int,
    digest: bytes,
    kind: str = EMAIL,
    key_id: str = KEY_ID,
    sketch_format: pb.SketchFormat.ValueType = pb.SKETCH_FORMAT_BLOOM_V1,
    content_length: int | None = None,
    content_sha256: bytes | None = None,
    data: bytes | None = None,
) -> list[pb.SubmitChunk]:
    """A header for ``payload`` (fields overridable) and ``data`` (default: ``payload``) in
    three chunks."""
    header = pb.SubmitHeader(
        format=sketch_format,
        kind=kind,
        key_id=key_id,
        params_digest=digest,
        declared_count=count,
        content_length=len(payload) if content_length is None else content_length,
        content_sha256=hashlib.sha256(payload).digest()
        if content_sha256 is None
        else content_sha256,
    )
    body = payload if data is None else data
    third = max(1, len(body) // 3)
    pieces = [body[i : i + third] for i in range(0, len(body), third)]
    return [pb.SubmitChunk(header=header), *(pb.SubmitChunk(data=p) for p in pieces)]


def crafted_filter(params: BloomParams, positions: np.ndarray, count: int) -> bytes:
    bits = np.zeros(params.m, dtype=np.uint8)
    bits[positions] = 1
    return encode_bloom(BloomFilter(params, np.packbits(bits, bitorder="little"), count))


def footprint(hub: RunningHub, member: HubClient) -> tuple[object, ...]:
    """Everything a submission could have changed."""
    listed = hub.review_stub.ListSubmissions(
        pb.ListSubmissionsRequest(), metadata=hub.metadata(COORDINATOR), timeout=RPC_TIMEOUT
    )
    with session_scope(hub.engine) as session:
        adds = AuditRepository(session).search(action="submission.add", limit=1000)
        rows = tuple(
            session.scalar(select(func.count()).select_from(table))
            for table in (SubmissionRow, SubmissionPayloadRow, ClusterRow)
        )
    return (
        member.status(),
        [
            (s.id, s.member, s.kind, s.status, s.declared_count, s.byte_size)
            for s in listed.submissions
        ],
        [entry.id for entry in adds],
        rows,
    )


def test_every_rejected_submission_leaves_no_trace(
    hub: RunningHub, subtests: pytest.Subtests
) -> None:
    forum = email_forum()
    m1, m2 = hub.client("m1"), hub.client("m2")
    submit_email(m1, forum, "m1")
    submit_email(m2, forum, "m2")
    published = m1.get_parameters()
    digest = published.bloom[EMAIL].digest
    prompt_digest = published.minhash[PROMPT].digest
    params = email_params()
    before = answers_of(resolve_email(m2, forum, "m2"))

    # A filter the hub would accept: m1's set and one more address.
    bloom = KeyedBloomFilter(params, forum.prf)
    bloom.add([*sorted(forum.sets["m1"]), "newcomer@example.com"])
    good = encode_bloom(bloom)
    n = bloom.count
    rng = np.random.default_rng(20_240_611)
    heavy = 1500  # enough items for the pattern checks to have statistical power
    heavy_bits = round(params.expected_fill(heavy) * params.m)
    other_params = BloomParams.for_capacity(EMAIL, KEY_ID, EMAIL_CAPACITY // 2, EMAIL_FPR)
    prompt_params = published.minhash[PROMPT].minhash_params()
    hasher = SaltedMinHasher.from_secret(forum_secret(), prompt_params)
    signatures = encode_signatures(
        SignatureSet(
            key_id=KEY_ID,
            shingle_unit="word",
            shingle_size=prompt_params.shingle_size,
            values=hasher.signatures(["one two three four five", "six seven eight nine ten"]),
        )
    )
    twice = "ab" * 16
    duplicate_ids = pb.ClusterSketchSet(
        signatures=signatures,
        clusters=[
            pb.ClusterSketch(cluster_id=twice, volume=5),
            pb.ClusterSketch(cluster_id=twice, volume=7),
        ],
    ).SerializeToString()
    not_a_set = b"\x0a\x05ab"  # field 1, 5 bytes announced, 2 present
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    precondition = grpc.StatusCode.FAILED_PRECONDITION

    cases: dict[str, tuple[list[pb.SubmitChunk], grpc.StatusCode, str]] = {
        "wrong params digest": (
            submit_stream(good, count=n, digest=hashlib.sha256(b"other").digest()),
            precondition,
            "parameters changed since they were fetched; fetch them again",
        ),
        "params digest not 32 bytes": (
            submit_stream(good, count=n, digest=digest[:5]),
            invalid,
            "params_digest must be 32 bytes",
        ),
        "wrong key id": (
            submit_stream(good, count=n, digest=digest, key_id="epoch-0"),
            precondition,
            "key id 'epoch-0', the forum's current key id is 'epoch-1'",
        ),
        "kind not enabled": (
            submit_stream(good, count=n, digest=digest, kind="phone"),
            precondition,
            "indicator kind 'phone' is not enabled on this hub",
        ),
        "unknown kind": (
            submit_stream(good, count=n, digest=digest, kind="no-such-kind"),
            precondition,
            "indicator kind 'no-such-kind' is not enabled on this hub",
        ),
        "unspecified format": (
            submit_stream(good, count=n, digest=digest, sketch_format=pb.SKETCH_FORMAT_UNSPECIFIED),
            invalid,
            "format must be BLOOM_V1 or CLUSTERS_V1",
        ),
        "bad content sha256": (
            submit_stream(
                good, count=n, digest=digest, content_sha256=hashlib.sha256(b"x").digest()
            ),
            invalid,
            "content SHA-256 does not match the header",
        ),
        "short content sha256": (
            submit_stream(good, count=n, digest=digest, content_sha256=b"\x00" * 8),
            invalid,
            "content_sha256 must be 32 bytes",
        ),
        "zero content length": (
            submit_stream(good, count=n, digest=digest, content_length=0),
            invalid,
            "content_length must be positive",
        ),
        "truncated stream": (
            submit_stream(good, count=n, digest=digest, data=good[:-10]),
            invalid,
            f"stream ended after {len(good) - 10} of {len(good)} announced bytes",
        ),
        "more bytes than announced": (
            submit_stream(good, count=n, digest=digest, data=good + b"\x00" * 10),
            invalid,
            f"stream carries more than the {len(good)} bytes announced",
        ),
        "data before the header": (
            [pb.SubmitChunk(data=good), *submit_stream(good, count=n, digest=digest)],
            invalid,
            "a submission stream starts with its header",
        ),
        "empty stream": ([], invalid, "a submission stream starts with its header"),
        "second header": (
            [
                *submit_stream(good, count=n, digest=digest),
                pb.SubmitChunk(header=pb.SubmitHeader()),
            ],
            invalid,
            "only data chunks may follow the header",
        ),
        "declared count above capacity": (
            submit_stream(good, count=EMAIL_CAPACITY + 1, digest=digest),
            invalid,
            f"declared count {EMAIL_CAPACITY + 1} exceeds the capacity {EMAIL_CAPACITY}",
        ),
        "declared count differs from the filter's": (
            submit_stream(good, count=n - 1, digest=digest),
            invalid,
            f"header declares {n - 1} items, the filter {n}",
        ),
        "saturated: every bit set": (
            submit_stream(
                saturated := crafted_filter(params, np.arange(params.m), n), count=n, digest=digest
            ),
            invalid,
            "filter is 100.0% full: its false-positive rate 1.00e+00 exceeds 2x the target",
        ),
        "fill far above the declared count": (
            submit_stream(
                overfull := crafted_filter(params, rng.choice(params.m, 3000, replace=False), n),
                count=n,
                digest=digest,
            ),
            invalid,
            f"filter has more bits set (3000) than {n} items produce",
        ),
        "periodic pattern with the right number of bits": (
            submit_stream(
                periodic := crafted_filter(
                    params,
                    np.linspace(0, params.m, heavy_bits, endpoint=False).astype(np.int64),
                    heavy,
                ),
                count=heavy,
                digest=digest,
            ),
            invalid,
            "filter bits are not spread like hash output",
        ),
        "right number of bits crowded into a quarter": (
            submit_stream(
                crowded := crafted_filter(
                    params, rng.choice(params.m // 4, heavy_bits, replace=False), heavy
                ),
                count=heavy,
                digest=digest,
            ),
            invalid,
            "filter bits are not spread like hash output",
        ),
        "filter of other dimensions": (
            submit_stream(
                encode_bloom(KeyedBloomFilter(other_params, forum.prf)), count=0, digest=digest
            ),
            invalid,
            f"filter m is {other_params.m}, expected {params.m}",
        ),
        "garbage payload": (
            submit_stream(garbage := rng.bytes(600), count=n, digest=digest),
            invalid,
            "not a sigshare Bloom filter (bad magic)",
        ),
        "cluster payload that is not a ClusterSketchSet": (
            submit_stream(
                not_a_set,
                count=1,
                digest=prompt_digest,
                kind=PROMPT,
                sketch_format=pb.SKETCH_FORMAT_CLUSTERS_V1,
            ),
            invalid,
            "payload is not a ClusterSketchSet message",
        ),
        "clusters with duplicate ids": (
            submit_stream(
                duplicate_ids,
                count=2,
                digest=prompt_digest,
                kind=PROMPT,
                sketch_format=pb.SKETCH_FORMAT_CLUSTERS_V1,
            ),
            invalid,
            "cluster ids repeat within the submission",
        ),
        "cluster family not enabled": (
            submit_stream(
                duplicate_ids,
                count=2,
                digest=prompt_digest,
                kind="profile",
                sketch_format=pb.SKETCH_FORMAT_CLUSTERS_V1,
            ),
            precondition,
            "fingerprint family 'profile' is not enabled on this hub",
        ),
    }
    assert len({saturated, overfull, periodic, crowded, garbage}) == 5

    baseline = footprint(hub, m1)
    for name, (chunks, code, fragment) in cases.items():
        with subtests.test(msg=name):
            got_code, message = refusal(
                partial(
                    hub.member_stub.Submit,
                    iter(chunks),
                    metadata=hub.metadata("m1"),
                    timeout=RPC_TIMEOUT,
                )
            )
            assert got_code == code
            assert fragment in message
            assert footprint(hub, m1) == baseline
    # Nothing a member can observe changed: m2's answers about its own values are the same.
    assert answers_of(resolve_email(m2, forum, "m2")) == before
    # The good filter itself is accepted: the cases failed for their defect alone.
    accepted = hub.member_stub.Submit(
        iter(submit_stream(good, count=n, digest=digest)),
        metadata=hub.metadata("m1"),
        timeout=RPC_TIMEOUT,
    )
    assert not accepted.duplicate


# ---------------------------------------------------------------------------------- 5. idempotency


def test_resubmission_is_idempotent_and_older_content_can_return(hub: RunningHub) -> None:
    first = frozenset(f"x{i:02d}@example.com" for i in range(20))
    second = frozenset(f"x{i:02d}@example.com" for i in range(10, 30)) | {"y@example.com"}
    other = frozenset(f"x{i:02d}@example.com" for i in (*range(5), *range(15, 25)))
    with_first = email_forum({"m1": first, "m2": other})
    with_second = email_forum({"m1": second, "m2": other})
    m1, m2 = hub.client("m1"), hub.client("m2")

    def m2_resolution(forum: EmailForum) -> list[int]:
        """m2's answers about its own values (the same tokens every time: they cost nothing)."""
        result = resolve_email(m2, forum, "m2")
        assert result.members == 2
        resolved_counts(forum, "m2", result, 2)
        assert result.submission_tokens == len(forum.sets["m2"])
        return list(result.others.tolist())

    def m1_active() -> list[int]:
        _, own = m1.status()
        return [s.id for s in own]

    original = submit_email(m1, with_first, "m1")
    assert not original.duplicate
    submit_email(m2, with_first, "m2")
    counts_first = m2_resolution(with_first)

    again = submit_email(m1, with_first, "m1")
    assert (again.duplicate, again.submission_id) == (True, original.submission_id)
    assert m2_resolution(with_first) == counts_first
    assert m1_active() == [original.submission_id]

    replaced = submit_email(m1, with_second, "m1")
    assert not replaced.duplicate
    assert replaced.submission_id != original.submission_id
    counts_second = m2_resolution(with_second)
    assert counts_second != counts_first
    assert m1_active() == [replaced.submission_id]

    # Re-sending the older content makes it current again (folded in between)...
    back = submit_email(m1, with_first, "m1")
    assert (back.duplicate, back.submission_id) == (False, original.submission_id)
    assert m1_active() == [original.submission_id]
    assert m2_resolution(with_first) == counts_first

    # ...and when the hub never folded the newer one in between.
    assert submit_email(m1, with_second, "m1").submission_id == replaced.submission_id
    assert submit_email(m1, with_first, "m1").submission_id == original.submission_id
    assert m2_resolution(with_first) == counts_first
    assert submit_email(m1, with_second, "m1").submission_id == replaced.submission_id
    assert m2_resolution(with_second) == counts_second
    listed = hub.review_stub.ListSubmissions(
        pb.ListSubmissionsRequest(kind=EMAIL),
        metadata=hub.metadata(COORDINATOR),
        timeout=RPC_TIMEOUT,
    )
    assert sorted((s.member, s.status) for s in listed.submissions) == [
        ("m1", "active"),
        ("m2", "active"),
    ]


def test_a_filter_resent_after_a_parameter_change_that_keeps_its_bytes_stays_active(
    hub: RunningHub,
) -> None:
    """Capacity 19,999 and 20,000 both give m = 430,528 and k = 15: after such a change a member's
    rebuilt filter is byte for byte the one it sent before, under a new parameter digest. The
    hub must accept it as current, not revive the old row under the retired digest."""
    forum = email_forum({m: s for m, s in overlapping_sets().items() if m in ("m1", "m2")})
    m1, m2 = hub.client("m1"), hub.client("m2")
    first = submit_email(m1, forum, "m1")
    submit_email(m2, forum, "m2")
    with session_scope(hub.engine) as session:
        parameters.set_kind_parameters(
            session,
            actor="test",
            kind=EMAIL,
            key_id=KEY_ID,
            capacity=EMAIL_CAPACITY - 1,
            forum_fpr=EMAIL_FPR,
            now=datetime.now(UTC),
        )
    forum.params = BloomParams.for_forum(EMAIL, KEY_ID, EMAIL_CAPACITY - 1, EMAIL_FPR, MAX_MEMBERS)
    assert (forum.params.m, forum.params.k) == (email_params().m, email_params().k) == (430_528, 15)
    for member, client in (("m1", m1), ("m2", m2)):
        resent = submit_email(client, forum, member)
        assert not resent.duplicate
    _, own = m1.status()
    assert [s.id for s in own] == [first.submission_id]
    result = resolve_email(m1, forum, "m1")
    assert result.members == 2
    resolved_counts(forum, "m1", result, quorum=2)


# ---------------------------------------------------------------------------------- 6. replicas


def _in_parallel(tasks: Sequence[Callable[[], Any]]) -> list[Any]:
    """Run ``tasks`` at once (released together by a barrier); their results, in order."""
    barrier = threading.Barrier(len(tasks))

    def run(task: Callable[[], Any]) -> Any:
        barrier.wait(timeout=RPC_TIMEOUT)
        return task()

    with ThreadPoolExecutor(max_workers=len(tasks)) as pool:
        futures = [pool.submit(run, task) for task in tasks]
        return [future.result(timeout=2 * RPC_TIMEOUT) for future in futures]


def test_two_replicas_on_one_postgresql_database_agree(
    postgres_engine: Engine, migrated_postgres_url: str
) -> None:
    forum = email_forum(overlapping_sets(per_subset={1: 20, 2: 6, 3: 5, 4: 5}))
    decoys = email_forum(
        {m: frozenset(sorted(s)[::2]) | {f"decoy-{m}@example.com"} for m, s in forum.sets.items()}
    )
    second_engine = make_engine(migrated_postgres_url)
    credentials = provision(postgres_engine)
    try:
        with (
            running_hub(postgres_engine, credentials) as first,
            running_hub(second_engine, credentials) as second,
        ):
            replicas = (first, second)
            clients = {(m, r): replicas[r].client(m) for m in MEMBERS for r in range(len(replicas))}

            def upload(index: int, member: str) -> int:
                submit_email(clients[member, index % 2], decoys, member)
                return submit_email(clients[member, (index + 1) % 2], forum, member).submission_id

            final_ids = _in_parallel([partial(upload, i, m) for i, m in enumerate(MEMBERS)])
            for member, submission_id in zip(MEMBERS, final_ids, strict=True):
                for replica in range(2):
                    _, own = clients[member, replica].status()
                    assert [s.id for s in own] == [submission_id]

            # Each member asks both replicas at once: identical answers and figures.
            resolved_on = _in_parallel(
                [partial(resolve_email, clients[m, r], forum, m) for m in MEMBERS for r in range(2)]
            )
            counts: dict[str, dict[str, int]] = {}
            for index, member in enumerate(MEMBERS):
                on_first, on_second = resolved_on[2 * index], resolved_on[2 * index + 1]
                assert on_first.members == len(MEMBERS)
                assert answers_of(on_first) == answers_of(on_second)
                assert on_first.submission_tokens == len(forum.sets[member])
                counts[member] = resolved_counts(forum, member, on_first, quorum=2)
                assert by_true_count(forum, member, counts[member]) == {
                    0: {0},
                    1: {1},
                    2: {2},
                    3: {3},
                }

            # Every member confirms everything at once, half through each replica, twice.
            resolved = {m: sorted(v for v, c in counts[m].items() if c) for m in MEMBERS}
            for round_ in range(2):
                results = _in_parallel(
                    [
                        partial(
                            clients[m, (i + round_) % 2].confirm,
                            EMAIL,
                            KEY_ID,
                            offer(m, resolved[m], forum),
                        )
                        for i, m in enumerate(MEMBERS)
                    ]
                )
                for member, result in zip(MEMBERS, results, strict=True):
                    assert (result.accepted, result.not_resolved) == (len(resolved[member]), 0)
                    if round_:
                        assert result.shared == len(resolved[member])

            confirmers = {v: set(who) for v, who in forum.shared(2).items()}
            views = [
                check_indicator_views(
                    replica,
                    {m: clients[m, r] for m in MEMBERS},
                    forum,
                    confirmers,
                    quorum=2,
                    reveal=False,
                )
                for r, replica in enumerate(replicas)
            ]
            assert views[0] == views[1]
            assert set(views[0]) == set(forum.shared(2))
            audits = [
                r.admin_stub.VerifyAudit(
                    pb.VerifyAuditRequest(), metadata=r.metadata(ADMIN), timeout=RPC_TIMEOUT
                )
                for r in replicas
            ]
    finally:
        second_engine.dispose()
    assert [a.intact for a in audits] == [True, True]
    verified = []
    for engine in (postgres_engine, second_engine):
        with session_scope(engine) as session:
            verification = verify_audit_log(session)
            entries = AuditRepository(session).search(limit=1000)
        assert verification.entries == len(entries)
        assert verification.head == entries[0]
        adds = [e.actor for e in entries if e.action == "submission.add"]
        assert sorted(adds) == sorted(MEMBERS * 2)
        verified.append(verification.entries)
    assert verified[0] == verified[1]


# ---------------------------------------------------------------------------------- 7. audit


def test_reads_and_admin_actions_are_audited_in_an_intact_chain(hub: RunningHub) -> None:
    forum = email_forum({m: s for m, s in overlapping_sets().items() if m in ("m1", "m2")})
    m1, m2 = hub.client("m1"), hub.client("m2")
    with session_scope(hub.engine) as session:
        setup_entries = len(AuditRepository(session).search(limit=1000))

    first = submit_email(m1, forum, "m1")
    submit_email(m2, forum, "m2")
    counts = resolved_counts(forum, "m1", resolve_email(m1, forum, "m1"), 2)
    m1.list_matches()
    m2.list_matches(EMAIL)
    resolved = sorted(v for v, c in counts.items() if c)
    m1.confirm(EMAIL, KEY_ID, offer("m1", resolved, forum))
    coordinator = hub.metadata(COORDINATOR)
    hub.review_stub.GetOverlapMatrix(pb.OverlapRequest(kind=EMAIL), metadata=coordinator)
    hub.review_stub.ListSharedIndicators(
        pb.ListSharedIndicatorsRequest(kind=EMAIL), metadata=coordinator
    )
    hub.review_stub.ListCampaigns(pb.ListCampaignsRequest(), metadata=coordinator)
    hub.review_stub.ListSubmissions(pb.ListSubmissionsRequest(), metadata=coordinator)
    admin = hub.metadata(ADMIN)
    hub.admin_stub.AddPrincipal(
        pb.AddPrincipalRequest(name="m9", role=pb.ROLE_MEMBER), metadata=admin
    )
    hub.admin_stub.SetParameters(
        pb.SetParametersRequest(
            bloom=[
                pb.BloomParameters(
                    kind=EMAIL, key_id=KEY_ID, capacity=EMAIL_CAPACITY, forum_fpr=EMAIL_FPR
                )
            ]
        ),
        metadata=admin,
    )
    hub.admin_stub.RevokePrincipal(pb.RevokePrincipalRequest(name="m9"), metadata=admin)

    with session_scope(hub.engine) as session:
        entries = list(reversed(AuditRepository(session).search(limit=1000)))
        verification = verify_audit_log(session)
    logged = [(e.actor, e.action, e.target) for e in entries[setup_entries:]]
    assert logged == [
        ("m1", "submission.add", EMAIL),
        ("m2", "submission.add", EMAIL),
        ("m1", "resolution.read", EMAIL),
        ("m1", "matches.read", "*"),
        ("m2", "matches.read", EMAIL),
        ("m1", "indicator.confirm", EMAIL),
        (COORDINATOR, "review.overlap", EMAIL),
        (COORDINATOR, "review.indicators", EMAIL),
        (COORDINATOR, "review.campaigns", "*"),
        (COORDINATOR, "review.submissions", "*"),
        (ADMIN, "principal.add", "m9"),
        (ADMIN, "params.set", EMAIL),
        (ADMIN, "principal.revoke", "m9"),
    ]
    details = entries[setup_entries:]
    assert details[0].details["submission"] == first.submission_id
    assert details[0].details["replaces"] is None
    own = len(forum.sets["m1"])
    assert details[2].details == {
        "tokens": own,
        "answered": own,
        "not_held": 0,
        "over_budget": 0,
        "shared": len(resolved),
        "submission_tokens": own,
        "day_tokens": own,
    }
    assert details[5].details == {"accepted": len(resolved), "refused": 0, "over_budget": 0}
    assert details[10].details == {"role": "member"}
    assert verification.entries == len(entries)
    assert verification.head == entries[-1]
    response = hub.admin_stub.VerifyAudit(pb.VerifyAuditRequest(), metadata=admin)
    # The verification is itself audited, before it walks the chain.
    assert (response.intact, response.entries) == (True, len(entries) + 1)


def test_admin_reads_are_audited(hub: RunningHub) -> None:
    admin = hub.metadata(ADMIN)
    with session_scope(hub.engine) as session:
        before = len(AuditRepository(session).search(actor=ADMIN, limit=1000))
    hub.admin_stub.ListPrincipals(pb.ListPrincipalsRequest(), metadata=admin, timeout=RPC_TIMEOUT)
    hub.admin_stub.VerifyAudit(pb.VerifyAuditRequest(), metadata=admin, timeout=RPC_TIMEOUT)
    with session_scope(hub.engine) as session:
        entries = AuditRepository(session).search(actor=ADMIN, limit=1000)
    assert len(entries) == before + 2


def test_set_parameters_over_grpc_keeps_the_policy_it_does_not_name(hub: RunningHub) -> None:
    set_email_policy(hub.engine, quorum=3, retention_days=7, reveal_members=True)
    response = hub.admin_stub.SetParameters(
        pb.SetParametersRequest(
            bloom=[
                pb.BloomParameters(
                    kind=EMAIL, key_id=KEY_ID, capacity=EMAIL_CAPACITY, forum_fpr=EMAIL_FPR
                )
            ]
        ),
        metadata=hub.metadata(ADMIN),
        timeout=RPC_TIMEOUT,
    )
    published = response.bloom[0]
    assert (published.quorum, published.retention_days) == (3, 7)
    assert published.reveal_members
    assert (published.max_members, published.replace_interval_seconds) == (MAX_MEMBERS, 0)
    assert (published.forum_fpr, published.target_fpr) == (EMAIL_FPR, EMAIL_FPR / 31)


@pytest.mark.parametrize(
    ("method", "kind"),
    [("Resolve", ""), ("ListMatches", "x" * 300)],
    ids=["resolution-empty-kind", "matches-long-kind"],
)
def test_a_malformed_kind_is_refused_with_a_message_about_the_kind(
    hub: RunningHub, method: str, kind: str
) -> None:
    metadata = hub.metadata("m1")
    calls: dict[str, Callable[[], object]] = {
        "Resolve": lambda: list(
            hub.member_stub.Resolve(
                iter(resolve_stream(kind=kind)), metadata=metadata, timeout=RPC_TIMEOUT
            )
        ),
        "ListMatches": lambda: hub.member_stub.ListMatches(
            pb.ListMatchesRequest(kind=kind), metadata=metadata, timeout=RPC_TIMEOUT
        ),
    }
    code, message = refusal(calls[method])
    assert code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION)
    assert "audit" not in message
    assert "kind" in message


# ---------------------------------------------------------------------------------- 8. resolution


def three_member_forum() -> EmailForum:
    return email_forum({m: s for m, s in overlapping_sets().items() if m in ("m1", "m2", "m3")})


def test_resolve_refuses_a_kind_not_enabled_another_key_epoch_and_a_member_without_a_filter(
    hub: RunningHub,
) -> None:
    forum = three_member_forum()
    submit_email(hub.client("m1"), forum, "m1")
    own = token_bytes(forum, sorted(forum.sets["m1"]))
    cases = {
        "kind not enabled": ("m1", "phone", KEY_ID, "indicator kind 'phone' is not enabled"),
        "unknown kind": ("m1", "no-such-kind", KEY_ID, "kind 'no-such-kind' is not enabled"),
        "another key epoch": (
            "m1",
            EMAIL,
            "epoch-0",
            "key id 'epoch-0' is not the forum's current key id 'epoch-1'",
        ),
        # m1's own tokens: only the member's own active filter can make them answerable.
        "no filter of the kind": ("m2", EMAIL, KEY_ID, "submit a filter of kind email"),
    }
    for name, (member, kind, key_id, fragment) in cases.items():
        chunks = resolve_stream(own, kind=kind, key_id=key_id)
        code, message = refusal(partial(raw_resolve, hub, member, chunks))
        assert (code, fragment in message) == (grpc.StatusCode.FAILED_PRECONDITION, True), name

    # A filter made under parameters that are no longer published is no filter either.
    with session_scope(hub.engine) as session:
        parameters.set_kind_parameters(
            session,
            actor="test",
            kind=EMAIL,
            key_id=KEY_ID,
            capacity=EMAIL_CAPACITY // 2,
            forum_fpr=EMAIL_FPR,
            now=datetime.now(UTC),
        )
    code, message = refusal(lambda: raw_resolve(hub, "m1", resolve_stream(own)))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert "submit a filter of kind email before resolving it" in message
    # Refused requests are charged nothing and answered nothing.
    assert (ledger_entries(hub, "m1"), ledger_entries(hub, "m2")) == (0, 0)
    assert resolution_reads(hub) == []


def test_tokens_the_members_own_filter_does_not_hold_are_not_answered(hub: RunningHub) -> None:
    forum = three_member_forum()
    clients = {m: hub.client(m) for m in ("m1", "m2", "m3")}
    submitted = {m: submit_email(c, forum, m) for m, c in clients.items()}
    own = sorted(forum.sets["m1"])
    # Values the other two hold (some of them both) and values nobody holds.
    foreign = sorted((forum.sets["m2"] | forum.sets["m3"]) - forum.sets["m1"])
    nobody = [f"nobody{i}@example.com" for i in range(5)]
    assert len(foreign) == 8 + 8 + 4 * 3  # m2's and m3's own blocks, and the blocks without m1
    assert not forum.bloom("m1").contains(foreign + nobody).any()
    # Interleaved, so that answers are checked position by position.
    strangers = foreign + nobody
    assert len(strangers) > len(own)
    asked = [v for pair in zip(own, strangers, strict=False) for v in pair]
    asked += strangers[len(own) :]
    result = clients["m1"].resolve(EMAIL, KEY_ID, token_bytes(forum, asked))

    expected_status = [
        TokenStatus.ANSWERED if v in forum.sets["m1"] else TokenStatus.NOT_HELD for v in asked
    ]
    assert result.status.tolist() == expected_status
    assert result.others.tolist() == [
        forum.others("m1", v) if v in forum.sets["m1"] else 0 for v in asked
    ]
    assert result.count(TokenStatus.NOT_HELD) == len(foreign) + len(nobody)
    # Only tokens the member's own filter holds are charged to its budgets.
    assert (result.submission_tokens, result.submission_budget) == (len(own), len(own))
    assert (result.day_tokens, result.day_budget) == (len(own), EMAIL_CAPACITY)
    assert result.budget_frees_at is None
    assert ledger_entries(hub, "m1") == len(own)
    assert submissions_listed(hub)["m1", submitted["m1"].submission_id].tokens_asked == len(own)
    assert resolution_reads(hub)[-1] == {
        "tokens": len(asked),
        "answered": len(own),
        "not_held": len(foreign) + len(nobody),
        "over_budget": 0,
        "shared": sum(1 for v in own if forum.others("m1", v)),
        "submission_tokens": len(own),
        "day_tokens": len(own),
    }


def test_repeated_tokens_cost_nothing(hub: RunningHub) -> None:
    forum = three_member_forum()
    clients = {m: hub.client(m) for m in ("m1", "m2", "m3")}
    submitted = {m: submit_email(c, forum, m) for m, c in clients.items()}
    own = sorted(forum.sets["m1"])
    first = resolve_email(clients["m1"], forum, "m1")
    counts = resolved_counts(forum, "m1", first, quorum=2)

    # Every token three times in one request, then the same request again.
    tripled = token_bytes(forum, own * 3)
    for _ in range(2):
        again = clients["m1"].resolve(EMAIL, KEY_ID, tripled)
        assert again.status.tolist() == [TokenStatus.ANSWERED] * (3 * len(own))
        assert again.others.tolist() == [counts[v] for v in own] * 3
        assert (again.submission_tokens, again.day_tokens) == (len(own), len(own))
    assert ledger_entries(hub, "m1") == len(own)
    assert submissions_listed(hub)["m1", submitted["m1"].submission_id].tokens_asked == len(own)


def test_a_request_announcing_more_tokens_than_capacity_is_refused_before_its_stream_is_read(
    hub: RunningHub,
) -> None:
    forum = three_member_forum()
    submit_email(hub.client("m1"), forum, "m1")
    release = threading.Event()
    sent_tokens: list[int] = []

    def requests() -> Iterator[pb.ResolveRequest]:
        yield resolve_stream(token_count=EMAIL_CAPACITY + 1)[0]
        # A hub that waited for the tokens would wait here until the call's deadline.
        release.wait(timeout=3 * RPC_TIMEOUT)
        sent_tokens.append(1)
        yield pb.ResolveRequest(tokens=bytes(16))

    try:
        code, message = refusal(
            lambda: list(
                hub.member_stub.Resolve(
                    requests(), metadata=hub.metadata("m1"), timeout=RPC_TIMEOUT
                )
            )
        )
        assert sent_tokens == []
    finally:
        release.set()
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert f"{EMAIL_CAPACITY + 1} tokens in one request; email members hold at most" in message
    assert ledger_entries(hub, "m1") == 0
    assert resolution_reads(hub) == []


def test_resolve_streams_must_carry_exactly_the_announced_tokens(hub: RunningHub) -> None:
    forum = three_member_forum()
    submit_email(hub.client("m1"), forum, "m1")
    own = token_bytes(forum, sorted(forum.sets["m1"]))
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    cases: dict[str, tuple[list[pb.ResolveRequest], str]] = {
        "fewer tokens than announced": (
            resolve_stream(own[:-16], token_count=len(own) // 16),
            f"stream ended after {len(own) - 16} of {len(own)} bytes announced",
        ),
        "more tokens than announced": (
            resolve_stream(own, token_count=len(own) // 16 - 1),
            f"stream carries more than the {len(own) - 16} bytes announced",
        ),
        "a ragged token": (
            resolve_stream(own[:-1], token_count=len(own) // 16),
            f"stream ended after {len(own) - 1} of {len(own)} bytes announced",
        ),
        "tokens before the header": (
            [pb.ResolveRequest(tokens=own), *resolve_stream(own)],
            "a resolve stream starts with its header",
        ),
        "a second header": (
            [*resolve_stream(own), resolve_stream()[0]],
            "only token chunks may follow the header",
        ),
        "empty stream": ([], "a resolve stream starts with its header"),
    }
    for name, (chunks, fragment) in cases.items():
        code, message = refusal(partial(raw_resolve, hub, "m1", chunks))
        assert (code, fragment in message) == (invalid, True), (name, message)
    assert ledger_entries(hub, "m1") == 0
    assert resolution_reads(hub) == []


def test_more_distinct_held_tokens_than_the_filter_declares_are_refused_and_change_nothing(
    hub: RunningHub,
) -> None:
    """The per-request rule: a member asks about at most the values its filter says it holds.

    A filter of 1,200 values declaring 1,199 passes the fill check (one item is k = 15 bits,
    under one standard deviation of the fill), so its owner can ask about 1,200 held tokens.
    """
    values = [f"bulk{i:05d}@example.com" for i in range(1200)]
    forum = email_forum({"m1": frozenset(values)})
    m1 = hub.client("m1")
    params = email_params()
    full = forum.bloom("m1")
    underdeclared = BloomFilter(params, full.bits, full.count - 1)
    published = m1.get_parameters().bloom[EMAIL]
    accepted = m1.submit(
        sketch_format="bloom",
        kind=EMAIL,
        key_id=KEY_ID,
        params_digest=published.digest,
        declared_count=len(values) - 1,
        payload=encode_bloom(underdeclared),
    )
    everything = token_bytes(forum, values)

    with pytest.raises(HubRejectedError) as caught:
        m1.resolve(EMAIL, KEY_ID, everything)
    assert caught.value.status == "FAILED_PRECONDITION"
    assert (
        "1200 distinct tokens your filter holds in one request, more than the 1199 values it "
        "declares"
    ) in caught.value.message
    assert ledger_entries(hub, "m1") == 0
    assert submissions_listed(hub)["m1", accepted.submission_id].tokens_asked == 0
    assert resolution_reads(hub) == []

    # Within the declared count it is answered; the one token beyond is over budget.
    most = m1.resolve(EMAIL, KEY_ID, everything[:-16])
    assert most.count(TokenStatus.ANSWERED) == len(values) - 1
    assert (most.submission_tokens, most.submission_budget) == (1199, 1199)
    last = m1.resolve(EMAIL, KEY_ID, everything[-16:])
    assert last.status.tolist() == [TokenStatus.OVER_BUDGET]
    assert last.budget_frees_at is None  # the submission's budget, not the day's
    assert ledger_entries(hub, "m1") == 1199
    assert submissions_listed(hub)["m1", accepted.submission_id].tokens_asked == 1199


def test_a_revoked_members_filter_no_longer_counts_for_others(hub: RunningHub) -> None:
    forum = three_member_forum()
    clients = {m: hub.client(m) for m in ("m1", "m2", "m3")}
    for member, client in clients.items():
        submit_email(client, forum, member)
    before = resolve_email(clients["m1"], forum, "m1")
    assert before.members == 3
    counts = resolved_counts(forum, "m1", before, quorum=2)
    assert by_true_count(forum, "m1", counts) == {0: {0}, 1: {1}, 2: {2}}

    hub.admin_stub.RevokePrincipal(
        pb.RevokePrincipalRequest(name="m2"), metadata=hub.metadata(ADMIN), timeout=RPC_TIMEOUT
    )
    without_m2 = email_forum({m: forum.sets[m] for m in ("m1", "m3")})
    after = resolve_email(clients["m1"], forum, "m1")
    assert after.members == 2
    counts = resolved_counts(without_m2, "m1", after, quorum=2)
    assert by_true_count(without_m2, "m1", counts) == {0: {0}, 1: {1}}
    # Exactly the values m2 holds lost one holder.
    own = sorted(forum.sets["m1"])
    lost = before.others.astype(int) - after.others.astype(int)
    assert {v for v, n in zip(own, lost.tolist(), strict=True) if n} == {
        v for v in own if "m2" in forum.holders(v)
    }
    assert set(lost.tolist()) == {0, 1}


def holder_names_by_value(
    forum: EmailForum, member: str, result: ResolveResult
) -> dict[str, tuple[str, ...]]:
    return {v: result.names_of(i) for i, v in enumerate(sorted(forum.sets[member]))}


def test_holder_names_are_exactly_the_other_holders_where_the_forum_reveals_them(
    hub: RunningHub,
) -> None:
    forum = email_forum()
    clients = {m: hub.client(m) for m in MEMBERS}
    for member, client in clients.items():
        submit_email(client, forum, member)
    for member, client in clients.items():
        hidden = resolve_email(client, forum, member)
        resolved_counts(forum, member, hidden, quorum=2)
        assert (hidden.holder_names, hidden.holders) == ((), None)
        assert set(holder_names_by_value(forum, member, hidden).values()) == {()}

    set_email_policy(hub.engine, quorum=3, reveal_members=True)
    for member, client in clients.items():
        revealed = resolve_email(client, forum, member)
        counts = resolved_counts(forum, member, revealed, quorum=3)
        names = holder_names_by_value(forum, member, revealed)
        # Names only where the count is shown (quorum − 1 = 2 others or more), and then all.
        expected = {
            v: tuple(sorted(forum.holders(v) - {member})) if counts[v] else () for v in names
        }
        assert names == expected
        assert set(revealed.holder_names) == {n for who in expected.values() for n in who}
        assert set(revealed.holder_names) == set(MEMBERS) - {member}
        assert revealed.holders is not None
        assert revealed.holders.shape == (len(forum.sets[member]), 1)
