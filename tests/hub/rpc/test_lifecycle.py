"""Member and credential lifecycle: revocation withdraws a member from every aggregate at once,
and rotation replaces a credential at once — each checked on a running hub, on SQLite and on
PostgreSQL, against exact oracles computed from the members' plain sets and templates.

Every aggregate is read right before and right after the revocation with no other action in
between: the answer must change at the revocation itself, not at the next submission.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import grpc
import numpy as np
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from sigshare.client.exit_codes import ExitCode
from sigshare.client.hub_types import ConfirmedToken
from sigshare.hub.cli import cli
from sigshare.hub.domain import (
    AuditEntry,
    RecordType,
    Role,
    SubmissionStatus,
    canonical_json,
)
from sigshare.hub.errors import NotFoundError, PermissionDeniedError, PreconditionError
from sigshare.hub.listing import RecordQuery
from sigshare.hub.services import coordinator_views, parameters, principals
from sigshare.hub.services.credentials import parse_credential
from sigshare.hub.services.submissions import UploadHeader, submit_bloom
from sigshare.hub.storage import make_engine, session_scope
from sigshare.hub.storage.audit import AuditRepository
from sigshare.hub.storage.database import DATABASE_URL_ENV
from sigshare.hub.storage.models import SubmissionPayloadRow, SubmissionRow
from sigshare.hub.storage.principals import PrincipalRepository
from sigshare.hub.storage.reviews import ReviewRepository
from sigshare.hub.storage.submissions import SubmissionRepository
from sigshare.hub.web import create_app
from sigshare.sketch.codec import SketchFormat, encode_bloom
from sigshare.v1 import hub_pb2 as pb
from tests.support.hub import (
    ADMIN,
    COORDINATOR,
    EMAIL,
    KEY_ID,
    PROMPT,
    RPC_TIMEOUT,
    EmailForum,
    RunningHub,
    cluster_upload,
    email_forum,
    email_params,
    forum_secret,
    prompt_forum,
    provision,
    resolve_email,
    resolved_counts,
    submit_clusters,
    submit_email,
)

REVOKED = "m3"
MEMBERS_BEFORE = ("m1", "m2", "m3", "m4")
MEMBERS_AFTER = ("m1", "m2", "m4")
PROMPT_PLAN = {"m1": (0, 1, 3), "m2": (0, 1, 2, 5), "m3": (0, 2, 4)}
"""Template 0 is seen by m1, m2 and m3; 1 by m1 and m2; 2 by m2 and m3 — exactly the quorum of
two, so revoking m3 ends its campaign and leaves template 0's with m1 and m2."""


def revoke(hub: RunningHub, name: str = REVOKED) -> pb.Principal:
    response = hub.admin_stub.RevokePrincipal(
        pb.RevokePrincipalRequest(name=name), metadata=hub.metadata(ADMIN), timeout=RPC_TIMEOUT
    )
    return response.principal


def submit_all_emails(hub: RunningHub, forum: EmailForum) -> dict[str, int]:
    return {m: submit_email(hub.client(m), forum, m).submission_id for m in forum.sets}


def audit(engine: Engine, action: str) -> list[AuditEntry]:
    with session_scope(engine) as session:
        return AuditRepository(session).search(action=action, limit=1000)


# ------------------------------------------------------------------ revocation: each aggregate


def test_revocation_withdraws_the_member_from_resolutions_at_once(hub: RunningHub) -> None:
    forum = email_forum()
    submit_all_emails(hub, forum)
    asker = hub.client("m1")
    before = resolve_email(asker, forum, "m1")
    assert before.members == 4
    counts_before = resolved_counts(forum, "m1", before, quorum=2)
    # Values m1 shares with m3 are counted with m3 among their holders.
    with_m3 = [v for v in forum.sets["m1"] if REVOKED in forum.holders(v)]
    assert with_m3
    assert all(counts_before[v] >= forum.others("m1", v) for v in with_m3)

    revoke(hub)

    after = resolve_email(asker, forum, "m1")
    assert after.members == 3
    without = EmailForum({m: s for m, s in forum.sets.items() if m != REVOKED}, forum.prf)
    counts_after = resolved_counts(without, "m1", after, quorum=2)
    # A value held by m1 and m3 only is no longer shared at all.
    only_m3 = [v for v in forum.sets["m1"] if forum.holders(v) == {"m1", REVOKED}]
    assert only_m3
    assert all(counts_after[v] == 0 for v in only_m3)


def test_revocation_withdraws_the_member_from_the_overlap_matrix_at_once(
    hub: RunningHub,
) -> None:
    forum = email_forum()
    submit_all_emails(hub, forum)

    def matrix() -> tuple[list[str], np.ndarray]:
        response = hub.review_stub.GetOverlapMatrix(
            pb.OverlapRequest(kind=EMAIL), metadata=hub.metadata(COORDINATOR), timeout=RPC_TIMEOUT
        )
        size = len(response.members)
        return list(response.members), np.array(response.estimate).reshape(size, size)

    members, before = matrix()
    assert members == list(MEMBERS_BEFORE)
    revoke(hub)
    members, after = matrix()
    assert members == list(MEMBERS_AFTER)
    # The other members' estimates come from the same filters: m3's row and column go, the
    # rest is exactly what it was.
    gone = MEMBERS_BEFORE.index(REVOKED)
    np.testing.assert_array_equal(after, np.delete(np.delete(before, gone, 0), gone, 1))
    # The console and `review overlaps` read the same service.
    with session_scope(hub.engine) as session:
        assert coordinator_views.overlap_matrix(session, EMAIL, datetime.now(UTC)).members == list(
            MEMBERS_AFTER
        )


def test_revocation_withdraws_the_member_from_campaigns_at_once(hub: RunningHub) -> None:
    forum = prompt_forum(PROMPT_PLAN)
    clients = {m: hub.client(m) for m in PROMPT_PLAN}
    params = clients["m1"].get_parameters().minhash[PROMPT].minhash_params()
    for member in PROMPT_PLAN:
        submit_clusters(clients[member], cluster_upload(forum, member, forum_secret(), params))

    def campaigns() -> dict[str, tuple[str, ...]]:
        response = hub.review_stub.ListCampaigns(
            pb.ListCampaignsRequest(family=PROMPT),
            metadata=hub.metadata(COORDINATOR),
            timeout=RPC_TIMEOUT,
        )
        return {c.categories[0]: tuple(c.members) for c in response.campaigns}

    before = campaigns()
    assert before == {"t0": ("m1", "m2", "m3"), "t1": ("m1", "m2"), "t2": ("m2", "m3")}
    revoke(hub)
    assert campaigns() == {"t0": ("m1", "m2"), "t1": ("m1", "m2")}
    # Members' own views agree: m2's cluster of template 2 is in no campaign any more.
    links = hub.client("m2").list_matches(PROMPT).campaigns
    assert len(links) == 2


def test_revocation_withdraws_the_member_from_every_count_at_once(hub: RunningHub) -> None:
    forum = email_forum()
    ids = submit_all_emails(hub, forum)
    forum_prompts = prompt_forum(PROMPT_PLAN)
    params = hub.client("m3").get_parameters().minhash[PROMPT].minhash_params()
    cluster_id = submit_clusters(
        hub.client("m3"), cluster_upload(forum_prompts, "m3", forum_secret(), params)
    ).submission_id

    def counts() -> tuple[tuple[int, int], list[str]]:
        with session_scope(hub.engine) as session:
            [rate] = parameters.false_shared_rates(session, datetime.now(UTC))
        listed = hub.review_stub.ListSubmissions(
            pb.ListSubmissionsRequest(), metadata=hub.metadata(COORDINATOR), timeout=RPC_TIMEOUT
        )
        return (rate.filters, rate.members), sorted(
            f"{s.member}/{s.kind}" for s in listed.submissions
        )

    assert counts() == (
        (4, 4),
        sorted([*(f"{m}/{EMAIL}" for m in MEMBERS_BEFORE), f"m3/minhash:{PROMPT}"]),
    )
    revoke(hub)
    assert counts() == ((3, 3), sorted(f"{m}/{EMAIL}" for m in MEMBERS_AFTER))

    # Withdrawn for good: status, no payload left, listed in the audit entry.
    withdrawn = sorted([ids[REVOKED], cluster_id])
    with session_scope(hub.engine) as session:
        rows = session.execute(
            select(SubmissionRow.id, SubmissionRow.status).where(SubmissionRow.id.in_(withdrawn))
        ).all()
        payloads = session.scalars(
            select(SubmissionPayloadRow.submission_id).where(
                SubmissionPayloadRow.submission_id.in_(withdrawn)
            )
        ).all()
    assert sorted(rows) == [(i, SubmissionStatus.WITHDRAWN.value) for i in withdrawn]
    assert payloads == []
    [entry] = audit(hub.engine, "principal.revoke")
    assert entry.details["withdrawn_submissions"] == withdrawn

    # Revoking again withdraws nothing more and keeps the first time.
    first = revoke(hub)
    assert revoke(hub).revoked_at == first.revoked_at
    assert audit(hub.engine, "principal.revoke")[0].details["withdrawn_submissions"] == []


def test_revocation_withdraws_the_member_from_shared_indicators_at_once(hub: RunningHub) -> None:
    """Confirmations are a member's statements: a revoked member's stop counting among the
    reporters of shared indicators (counts and names). A token it took below the quorum keeps
    its record, and review history, with the count it has now."""
    forum = email_forum()
    submit_all_emails(hub, forum)
    for member in MEMBERS_BEFORE:
        client = hub.client(member)
        counts = resolved_counts(forum, member, resolve_email(client, forum, member), 2)
        resolved = sorted(v for v, c in counts.items() if c)
        offered = [ConfirmedToken(token=forum.token(v), category="probe") for v in resolved]
        assert client.confirm(EMAIL, KEY_ID, offered).accepted == len(resolved)

    def reporters() -> dict[str, tuple[int, tuple[str, ...]]]:
        """Each shared value's reporter count and names, as coordinators' records hold them."""
        with session_scope(hub.engine) as session:
            listing = RecordQuery(RecordType.INDICATOR, scope=EMAIL, size=1000)
            records = ReviewRepository(session).indicators(listing).items
        by_token = forum.value_of()
        return {by_token[r.token]: (r.reporters, r.reporter_names) for r in records}

    shared = forum.shared(2)
    before = reporters()
    assert set(before) == set(shared)  # every value held by two or more members
    for value in shared:
        holders = tuple(sorted(forum.holders(value)))
        assert before[value] == (len(holders), holders)

    revoke(hub)

    after = reporters()
    assert set(after) == set(before)  # no record is dropped
    for value in shared:
        holders = tuple(sorted(forum.holders(value) - {REVOKED}))
        assert after[value] == (len(holders), holders)
    assert any(len(forum.holders(v) - {REVOKED}) == 1 for v in shared)  # fell below quorum
    [entry] = audit(hub.engine, "principal.revoke")
    assert entry.details["withdrawn_confirmations"] == sum(
        1 for v in shared if REVOKED in forum.holders(v)
    )


def test_an_upload_in_flight_when_its_member_is_revoked_or_rotated_stores_nothing(
    hub: RunningHub,
) -> None:
    """The upload authenticated before the revocation (or rotation) and reaches the database
    after it: the store refuses it, so nothing of the member comes back."""
    forum = email_forum()
    bloom = forum.bloom("m1")
    payload = encode_bloom(bloom)
    header = UploadHeader(
        format=SketchFormat.BLOOM_V1,
        kind=EMAIL,
        key_id=KEY_ID,
        params_digest=email_params().digest(),
        declared_count=bloom.count,
        content_length=len(payload),
        content_sha256=hashlib.sha256(payload).digest(),
    )
    now = datetime.now(UTC)
    for name, change in (
        ("m1", principals.revoke_principal),
        ("m2", principals.rotate_principal),
    ):
        authenticated = hub.principal(name)
        with session_scope(hub.engine) as session:
            change(session, actor="test", name=name, now=now)
        with pytest.raises(PermissionDeniedError), session_scope(hub.engine) as session:
            submit_bloom(session, authenticated, header, payload, now)
        with session_scope(hub.engine) as session:
            assert SubmissionRepository(session).of_member(authenticated.id) == []


# ------------------------------------------------------------------------------- rotation


def call_as(hub: RunningHub, credential: str) -> grpc.StatusCode:
    try:
        hub.member_stub.GetStatus(
            pb.GetStatusRequest(),
            metadata=(("authorization", f"Bearer {credential}"),),
            timeout=RPC_TIMEOUT,
        )
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def test_rotation_refuses_the_old_credential_at_once_and_accepts_the_new(
    hub: RunningHub,
) -> None:
    old = hub.credentials["m1"]
    assert call_as(hub, old) is grpc.StatusCode.OK
    response = hub.admin_stub.RotatePrincipal(
        pb.RotatePrincipalRequest(name="m1"), metadata=hub.metadata(ADMIN), timeout=RPC_TIMEOUT
    )
    new = response.credential
    assert response.principal.name == "m1"
    assert response.principal.role == pb.ROLE_MEMBER
    assert parse_credential(new) is not None
    assert new != old
    assert call_as(hub, old) is grpc.StatusCode.UNAUTHENTICATED
    assert call_as(hub, new) is grpc.StatusCode.OK
    # The same principal: the hub still knows the caller as m1.
    hub.credentials["m1"] = new
    assert hub.client("m1").status()[0] == "m1"
    [entry] = audit(hub.engine, "principal.rotate")
    assert (entry.actor, entry.target, entry.details) == (
        ADMIN,
        "m1",
        {"role": "member", "web_sessions_ended": 0},
    )
    assert_no_credential_material(entry, old, new)


def assert_no_credential_material(entry: AuditEntry, *credentials: str) -> None:
    document = canonical_json(
        {"actor": entry.actor, "target": entry.target, "details": entry.details}
    )
    for credential in credentials:
        parsed = parse_credential(credential)
        assert parsed is not None
        for part in (credential, parsed.credential_id, parsed.secret):
            assert part not in document


@pytest.mark.parametrize(
    ("name", "revoked", "code", "error"),
    [
        ("m1", True, grpc.StatusCode.FAILED_PRECONDITION, PreconditionError),
        ("nobody", False, grpc.StatusCode.NOT_FOUND, NotFoundError),
    ],
)
def test_rotating_a_revoked_or_unknown_principal_fails_and_changes_nothing(
    hub: RunningHub,
    name: str,
    revoked: bool,
    code: grpc.StatusCode,
    error: type[Exception],
) -> None:
    if revoked:
        revoke(hub, name)
    with session_scope(hub.engine) as session:
        before = PrincipalRepository(session).list()
        entries = AuditRepository(session).search(limit=1000)
    with pytest.raises(grpc.RpcError) as caught:
        hub.admin_stub.RotatePrincipal(
            pb.RotatePrincipalRequest(name=name), metadata=hub.metadata(ADMIN), timeout=RPC_TIMEOUT
        )
    assert caught.value.code() is code
    assert name in (caught.value.details() or "")
    with pytest.raises(error), session_scope(hub.engine) as session:
        principals.rotate_principal(session, actor="test", name=name, now=datetime.now(UTC))
    with session_scope(hub.engine) as session:
        assert PrincipalRepository(session).list() == before
        # Only the admin's own authenticated reads may have been audited; no rotation.
        assert [e for e in AuditRepository(session).search(limit=1000) if e not in entries] == []
    if revoked:
        assert call_as(hub, hub.credentials[name]) is grpc.StatusCode.UNAUTHENTICATED


def test_member_rotate_prints_the_new_credential_once_and_the_old_one_is_refused(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DATABASE_URL_ENV, sqlite_url)
    engine = make_engine(sqlite_url)
    try:
        credentials = provision(engine)
        runner = CliRunner()
        result = runner.invoke(cli, ["member", "rotate", "m2"])
        assert result.exit_code == 0, result.output
        new = result.stdout.strip()
        assert parse_credential(new) is not None
        assert new != credentials["m2"]
        assert "rotated the credential of member m2" in result.stderr
        with session_scope(engine) as session:
            now = datetime.now(UTC)
            assert principals.authenticate(session, credentials["m2"], now) is None
            found = principals.authenticate(session, new, now)
            assert found is not None
            assert found.name == "m2"
        [entry] = audit(engine, "principal.rotate")
        assert entry.target == "m2"
        assert entry.actor.startswith("cli:")
        assert_no_credential_material(entry, credentials["m2"], new)

        again = runner.invoke(cli, ["member", "rotate", "m2", "--json"])
        assert again.exit_code == 0, again.output
        document = json.loads(again.stdout)
        assert (document["name"], document["role"], document["revoked_at"]) == (
            "m2",
            "member",
            None,
        )
        assert parse_credential(document["credential"]) is not None

        refused = runner.invoke(cli, ["member", "rotate", "nobody"])
        assert refused.exit_code == ExitCode.INPUT
        assert refused.stdout == ""
        assert "nobody" in refused.stderr
    finally:
        engine.dispose()


def test_rotation_ends_console_sessions_and_refuses_the_old_credential_at_sign_in(
    engine: Engine,
) -> None:
    credentials = provision(engine)
    client = TestClient(create_app(engine, secure_cookies=False))

    def sign_in(credential: str) -> int:
        client.get("/login")
        response = client.post(
            "/login",
            data={"credential": credential, "csrf": client.cookies["sigshare_login"], "next": "/"},
            follow_redirects=False,
        )
        return response.status_code

    assert sign_in(credentials[COORDINATOR]) == 303
    assert client.get("/", follow_redirects=False).status_code == 200
    with session_scope(engine) as session:
        _, credential = principals.rotate_principal(
            session, actor="test", name=COORDINATOR, now=datetime.now(UTC)
        )
    # The open session ended with the old credential.
    response = client.get("/", follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (303, "/login")
    client.cookies.clear()
    assert sign_in(credentials[COORDINATOR]) != 303
    assert sign_in(credential.token) == 303
    assert client.get("/", follow_redirects=False).status_code == 200
    [entry] = audit(engine, "principal.rotate")
    assert entry.details == {"role": Role.COORDINATOR.value, "web_sessions_ended": 1}
