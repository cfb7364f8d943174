"""Shared pieces of the fuzz suites: case budgets, the case counter, and a real hub to attack.

Case budgets
    Every fuzz test takes its ``max_examples`` from :func:`fuzz_settings`: a small CI default per
    test (the fast profile, settings profile ``"ci"``), or ``SIGSHARE_FUZZ_EXAMPLES=N`` for the
    long run (N examples per test)::

        SIGSHARE_FUZZ_EXAMPLES=20000 .venv/bin/pytest -q tests/security/test_fuzz_rpc.py \
            tests/security/test_fuzz_inputs.py -p no:xdist

    The settings are applied per test, never loaded globally, so the rest of the suite keeps its
    own Hypothesis settings.

Case counter
    :func:`counted` counts every call of a test body (each generated example, replays and
    shrinks included). Each module writes its counts when it finishes into
    ``test-output/fuzz-cases.json`` — per test, per module and in total — merged across xdist
    workers of one run (they share ``PYTEST_XDIST_TESTRUNUID``) under a file lock.

The hub
    :class:`FuzzHub` starts one real hub on loopback over a migrated SQLite file (insecure, like the
    integration tests), provisions it with :func:`tests.support.hub.provision` and records a
    baseline: two members' e-mail filters, one member's prompt clusters, shared indicators both
    members confirmed (for the review workflow's RPCs to act on), and member ``m1``'s answers to
    a ``Resolve`` of its own e-mail tokens. :meth:`FuzzHub.snapshot` captures the state a refused
    request must not change — query ledgers and ``tokens_asked`` included, row for row — and
    :meth:`FuzzHub.check_refusal` also checks that an accepted request changed no other member's
    ledger.
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import grpc
import numpy as np
from hypothesis import HealthCheck, settings
from sqlalchemy import Engine, func, select

from sigshare.client.hub_client import HubClient
from sigshare.client.hub_types import ConfirmedToken
from sigshare.hub.domain import RecordType, Role
from sigshare.hub.listing import RecordQuery
from sigshare.hub.matching.query_ledger import QueryLedger
from sigshare.hub.services import principals, reviews
from sigshare.hub.storage import make_engine, migrate, session_scope
from sigshare.hub.storage.models import (
    AuditLogRow,
    CampaignRow,
    ClusterRow,
    ConfirmationRow,
    KeyEnvelopeRow,
    KeyRotationRow,
    KindParametersRow,
    MemberKeyRow,
    MinHashParametersRow,
    PrincipalRow,
    QueryLedgerRow,
    SharedIndicatorRow,
    SubmissionRow,
)
from sigshare.sketch.prf import TOKEN_BYTES
from sigshare.v1 import hub_pb2 as pb
from tests.support.hub import (
    ADMIN,
    COORDINATOR,
    EMAIL,
    KEY_ID,
    MEMBERS,
    PROMPT,
    RunningHub,
    cluster_upload,
    email_forum,
    forum_secret,
    prompt_forum,
    provision,
    resolve_email,
    running_hub,
    submit_clusters,
    submit_email,
)

# ---------------------------------------------------------------------------------- budgets

EXAMPLES_ENV = "SIGSHARE_FUZZ_EXAMPLES"
OUTPUT = Path(__file__).resolve().parents[2] / "test-output" / "fuzz-cases.json"

settings.register_profile(
    "ci",
    deadline=None,
    database=None,
    derandomize=False,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
        HealthCheck.large_base_example,
    ],
)


def examples(ci_default: int) -> int:
    """Examples per test: ``SIGSHARE_FUZZ_EXAMPLES`` when set (the long run), else the CI
    default."""
    raw = os.environ.get(EXAMPLES_ENV, "").strip()
    return int(raw) if raw else ci_default


def long_run() -> bool:
    return bool(os.environ.get(EXAMPLES_ENV, "").strip())


def fuzz_settings(ci_default: int, long_cap: int | None = None, **overrides: Any) -> settings:
    """``long_cap`` bounds the long run for expensive tests (e.g. 60,000-token requests)."""
    count = examples(ci_default)
    if long_cap is not None and long_run():
        count = min(count, long_cap)
    # CI replays the same cases every run (a red build means a change broke something); the
    # long run explores new ones each time.
    overrides.setdefault("derandomize", not long_run())
    return settings(settings.get_profile("ci"), max_examples=count, **overrides)


# ---------------------------------------------------------------------------------- counting

CASES: Counter[str] = Counter()
_CASES_LOCK = threading.Lock()
_RUN_ID = os.environ.get("PYTEST_XDIST_TESTRUNUID") or f"local-{os.getpid()}-{uuid.uuid4().hex}"

_F = TypeVar("_F", bound=Callable[..., Any])


def counted(name: str) -> Callable[[_F], _F]:
    """Count each call of the decorated test body under ``name`` (module::test)."""

    def wrap(body: _F) -> _F:
        @functools.wraps(body)
        def run(*args: Any, **kwargs: Any) -> Any:
            with _CASES_LOCK:
                CASES[name] += 1
            return body(*args, **kwargs)

        return run  # type: ignore[return-value]

    return wrap


def write_cases(module: str) -> None:
    """Merge this process's counts for ``module`` into :data:`OUTPUT` (one file per run)."""
    mine = {name: n for name, n in CASES.items() if name.startswith(f"{module}::")}
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    with open(OUTPUT.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            document = json.loads(OUTPUT.read_text()) if OUTPUT.exists() else {}
        except ValueError:
            document = {}
        if document.get("run") != _RUN_ID:
            document = {"run": _RUN_ID, "started": datetime.now(UTC).isoformat(), "tests": {}}
        tests: dict[str, int] = document["tests"]
        for name, count in mine.items():
            tests[name] = tests.get(name, 0) + count
        modules: Counter[str] = Counter()
        for name, count in tests.items():
            modules[name.split("::", 1)[0]] += count
        document["examples_per_test"] = os.environ.get(EXAMPLES_ENV) or "ci-defaults"
        document["modules"] = dict(sorted(modules.items()))
        document["total"] = sum(tests.values())
        document["updated"] = datetime.now(UTC).isoformat()
        document["tests"] = dict(sorted(tests.items()))
        OUTPUT.write_text(json.dumps(document, indent=2) + "\n")
        fcntl.flock(lock, fcntl.LOCK_UN)
    for name in mine:
        CASES.pop(name)


# ---------------------------------------------------------------------------------- the hub

RPC_TIMEOUT = 5.0
"""Per-call deadline: a hub that takes longer than this on a tiny request is hanging."""

REFUSALS = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
    }
)
"""Statuses a refused request may end with (plus ALREADY_EXISTS where a name is taken)."""

READ_ACTIONS = frozenset(
    {
        "resolution.read",  # audited with its figures, but a read: the ledger is checked apart
        "matches.read",
        "review.overlap",
        "review.indicators",
        "review.campaigns",
        "review.submissions",
        "review.history",
        "principal.list",
        "audit.verify",
    }
)
"""Audit entries written for reads (before the read can fail): not state changes."""
RECORD_ONLY_ACTIONS = READ_ACTIONS | {"auth.refused"}
"""Audit entries that record an event rather than change state: reads, and the aggregated
record of refused credentials (a refusal changes nothing, but is audited)."""

METHODS: dict[str, tuple[str, type[Any]]] = {
    f"/{service.full_name}/{method.name}": (
        "stream" if method.client_streaming else "unary",
        getattr(pb, method.input_type.name),
    )
    for service in pb.DESCRIPTOR.services_by_name.values()
    for method in service.methods
}
"""Every sigshare RPC's full path → (request cardinality, request message class)."""

SERVER_STREAMING = frozenset(
    f"/{service.full_name}/{method.name}"
    for service in pb.DESCRIPTOR.services_by_name.values()
    for method in service.methods
    if method.server_streaming
)

SUBMITTERS = ("m1", "m2")
"""Members with an e-mail filter in the baseline (m3 and m4 have none)."""

CUSTODIAN = "custodian"
ROLE_OF_SERVICE = {
    "sigshare.v1.MemberService": "m1",
    "sigshare.v1.ReviewService": COORDINATOR,
    "sigshare.v1.AdminService": ADMIN,
    "sigshare.v1.KeyService": "m1",
    "sigshare.v1.CustodianService": CUSTODIAN,
}


@dataclass(frozen=True)
class Outcome:
    code: grpc.StatusCode
    details: str
    responses: tuple[bytes, ...] = ()
    caller: str | None = None
    """The principal the call was made as, when its credential was a real one."""


@dataclass(frozen=True)
class Answers:
    """A decoded Resolve answer stream: the summary and the per-token bytes, concatenated."""

    summary: pb.ResolveSummary
    status: bytes
    others: bytes
    holders: bytes

    def key(self) -> tuple[int, int, bytes, bytes, tuple[str, ...], bytes]:
        """What must not change for the same question: everything but budgets and times."""
        return (
            self.summary.quorum,
            self.summary.members,
            self.status,
            self.others,
            tuple(self.summary.holder_names),
            self.holders,
        )


def decode_answers(responses: tuple[bytes, ...]) -> Answers:
    """Parse a Resolve response stream; the summary must come first, answers after it."""
    assert responses, "an accepted Resolve sent nothing"
    first = pb.ResolveResponse.FromString(responses[0])
    assert first.WhichOneof("part") == "summary", "a Resolve answer starts with its summary"
    status, others, holders = bytearray(), bytearray(), bytearray()
    for raw in responses[1:]:
        message = pb.ResolveResponse.FromString(raw)
        assert message.WhichOneof("part") == "answers", "a second summary"
        status += message.answers.status
        others += message.answers.others
        holders += message.answers.holders
    return Answers(first.summary, bytes(status), bytes(others), bytes(holders))


Ledger = tuple[str, str, int, bytes, bytes, Any]
"""member name, kind, entries, tokens, asked_at, updated_at: one query_ledgers row."""
Asked = tuple[str, str, int, int]
"""member name, kind, submission id, tokens_asked: one submission's query count."""


@dataclass(frozen=True)
class Snapshot:
    active: tuple[tuple[str, str, str, bytes], ...]
    submissions: int
    shared_indicators: int
    confirmations: int
    campaigns: int
    clusters: int
    keyring: tuple[int, int, int]
    """Key registrations, rotations and envelopes."""
    principals: tuple[tuple[str, str, bool], ...]
    kind_parameters: tuple[tuple[Any, ...], ...]
    minhash_parameters: tuple[tuple[Any, ...], ...]
    audit: tuple[tuple[int, str, str, str], ...]
    ledgers: tuple[Ledger, ...]
    asked: tuple[Asked, ...]

    def queries_of_others(self, member: str | None) -> tuple[tuple[Ledger, ...], tuple[Asked, ...]]:
        """The query ledgers and ``tokens_asked`` of every member but ``member``."""
        return (
            tuple(row for row in self.ledgers if row[0] != member),
            tuple(row for row in self.asked if row[0] != member),
        )


class FuzzHub:
    """One started hub, its principals' credentials, raw calls, and state snapshots."""

    def __init__(self, hub: RunningHub, engine: Engine) -> None:
        self.hub = hub
        self.engine = engine
        self.forum = email_forum()
        self.baseline: dict[str, tuple[Any, ...]] = {}
        self.email_digest = b""
        self.prompt_digest = b""
        self.bloom_payload = b""
        self.cluster_payload = b""
        self.cluster_count = 0
        self.record_ids: list[str] = []
        """The shared indicators' ids (what the review workflow's RPCs name)."""
        self._clients: dict[str, HubClient] = {}

    # --- setup

    def establish_baseline(self) -> None:
        """m1 and m2 submit e-mail filters, m1 its prompt clusters; both confirm a few of the
        values they share (shared indicators); both members' answers to a Resolve of their own
        e-mail tokens are kept."""
        from sigshare.sketch.codec import encode_bloom

        params = self.client("m1").get_parameters()
        self.email_digest = params.bloom[EMAIL].digest
        self.prompt_digest = params.minhash[PROMPT].digest
        for member in SUBMITTERS:
            submit_email(self.client(member), self.forum, member)
        self.bloom_payload = encode_bloom(self.forum.bloom("m1"))
        prompts = prompt_forum({"m1": (0, 1), "m2": (1,)})
        minhash = params.minhash[PROMPT].minhash_params()
        upload = cluster_upload(prompts, "m1", forum_secret(), minhash)
        submit_clusters(self.client("m1"), upload)
        self.cluster_payload = upload.payload
        self.cluster_count = len(upload.clusters)
        both = sorted(self.forum.sets["m1"] & self.forum.sets["m2"])[:3]
        for member in SUBMITTERS:
            offered = [ConfirmedToken(token=self.forum.token(value)) for value in both]
            assert self.client(member).confirm(EMAIL, KEY_ID, offered).accepted == len(both)
        with session_scope(self.engine) as session:
            listed = reviews.indicators(session, RecordQuery(RecordType.INDICATOR, size=100))
        self.record_ids = [record.id for record in listed.items]
        assert len(self.record_ids) == len(both)
        for member in SUBMITTERS:
            self.baseline[member] = self.resolve_own(member)

    def client(self, member: str) -> HubClient:
        if member not in self._clients:
            self._clients[member] = self.hub.client(member)
        return self._clients[member]

    def own_tokens(self, member: str) -> bytes:
        """``member``'s e-mail tokens, concatenated in sorted value order (what it asks about)."""
        return b"".join(self.forum.token(value) for value in sorted(self.forum.sets[member]))

    def resolve_own(self, member: str) -> tuple[Any, ...]:
        """``member``'s answers for its own tokens, without budgets and times."""
        result = resolve_email(self.client(member), self.forum, member)
        holders = b"" if result.holders is None else result.holders.tobytes()
        return (
            result.quorum,
            result.members,
            result.status.tobytes(),
            result.others.tobytes(),
            result.holder_names,
            holders,
        )

    def expected_answers(self, member: str, tokens: bytes) -> tuple[bytes, bytes]:
        """The exact answers to ``member`` for ``tokens`` while every held token is within
        budget: status ANSWERED where its own filter holds the token (NOT_HELD elsewhere), and
        the number of other submitters whose filter holds it, 0 below quorum − 1 (quorum 2)."""
        array = np.frombuffer(tokens, dtype="<u8").reshape(-1, 2)
        held = self.forum.bloom(member).contains_tokens(array)
        others = sum(
            (
                self.forum.bloom(other).contains_tokens(array).astype(np.int64)
                for other in SUBMITTERS
                if other != member
            ),
            start=np.zeros(len(array), dtype=np.int64),
        )
        status = np.where(held, 0, 1).astype(np.uint8)
        counts = np.where(held & (others >= 1), others, 0).astype(np.uint8)
        return status.tobytes(), counts.tobytes()

    # --- calls

    def metadata(self, who: str | None) -> tuple[tuple[str, str], ...]:
        if who is None:
            return ()
        if who in self.hub.credentials:
            metadata: tuple[tuple[str, str], ...] = self.hub.metadata(who)
            return metadata
        return (("authorization", who),)  # a raw (hostile) authorization value

    def role_for(self, method: str) -> str:
        role: str = ROLE_OF_SERVICE[method.strip("/").split("/")[0]]
        return role

    def call_raw(
        self,
        method: str,
        payloads: list[bytes],
        *,
        who: str | None,
        timeout: float = RPC_TIMEOUT,
        cancel_after: int | None = None,
    ) -> Outcome:
        """Send ``payloads`` as the serialized request(s) of ``method``: bytes as they are.

        ``cancel_after``: cancel a server-streaming call once that many responses arrived.
        """
        channel = self.hub.channel
        cardinality, _ = METHODS[method]
        metadata = self.metadata(who)
        caller = who if who in self.hub.credentials else None
        responses: list[bytes] = []
        try:
            if cardinality == "stream" and method in SERVER_STREAMING:
                bidi: grpc.StreamStreamMultiCallable[Any, Any] = channel.stream_stream(
                    method, request_serializer=None, response_deserializer=None
                )
                replies = bidi(iter(payloads), timeout=timeout, metadata=metadata)
                for index, response in enumerate(replies):
                    responses.append(response)
                    if cancel_after is not None and index + 1 >= cancel_after:
                        replies.cancel()
                        return Outcome(
                            grpc.StatusCode.CANCELLED, "cancelled", tuple(responses), caller
                        )
            elif cardinality == "stream":
                upload: grpc.StreamUnaryMultiCallable[Any, Any] = channel.stream_unary(
                    method, request_serializer=None, response_deserializer=None
                )
                responses.append(upload(iter(payloads), timeout=timeout, metadata=metadata))
            elif method in SERVER_STREAMING:
                download: grpc.UnaryStreamMultiCallable[Any, Any] = channel.unary_stream(
                    method, request_serializer=None, response_deserializer=None
                )
                stream = download(payloads[0], timeout=timeout, metadata=metadata)
                for index, response in enumerate(stream):
                    responses.append(response)
                    if cancel_after is not None and index + 1 >= cancel_after:
                        stream.cancel()
                        return Outcome(
                            grpc.StatusCode.CANCELLED, "cancelled", tuple(responses), caller
                        )
            else:
                unary: grpc.UnaryUnaryMultiCallable[Any, Any] = channel.unary_unary(
                    method, request_serializer=None, response_deserializer=None
                )
                responses.append(unary(payloads[0], timeout=timeout, metadata=metadata))
        except grpc.RpcError as error:
            failed: Any = error
            return Outcome(failed.code(), failed.details() or "", tuple(responses), caller)
        return Outcome(grpc.StatusCode.OK, "", tuple(responses), caller)

    def cancel_while_sending(
        self, method: str, payloads: list[bytes], *, who: str, after: float = 0.2
    ) -> Outcome:
        """Send ``payloads`` on a client stream, keep it open (no half-close), and cancel it
        after ``after`` seconds: a client that goes away mid-request."""
        release = threading.Event()

        def requests() -> Iterator[bytes]:
            yield from payloads
            release.wait(RPC_TIMEOUT)

        bidi: grpc.StreamStreamMultiCallable[Any, Any] = self.hub.channel.stream_stream(
            method, request_serializer=None, response_deserializer=None
        )
        stream = bidi(requests(), timeout=RPC_TIMEOUT, metadata=self.metadata(who))
        try:
            time.sleep(after)
            stream.cancel()
        finally:
            release.set()
        code: Any = stream.code()
        return Outcome(code, stream.details() or "", (), who)

    def call(self, method: str, *messages: Any, who: str | None = "", **kwargs: Any) -> Outcome:
        """Send protobuf ``messages`` (several for Submit) as ``who`` (default: the service's
        role)."""
        caller = self.role_for(method) if who == "" else who
        return self.call_raw(
            method, [m.SerializeToString() for m in messages], who=caller, **kwargs
        )

    # --- state

    def settled_snapshot(self, quiet: float = 0.25, timeout: float = 5.0) -> Snapshot:
        """A snapshot once the state has stopped changing for ``quiet`` seconds: a Resolve
        stream the client cancelled may still be answered and recorded by the hub after the
        client has given up on it, and that late write must not land inside the next check."""
        deadline = time.monotonic() + timeout
        previous = self.snapshot()
        while True:
            time.sleep(quiet)
            current = self.snapshot()
            if current == previous or time.monotonic() > deadline:
                return current
            previous = current

    def snapshot(self) -> Snapshot:
        with session_scope(self.engine) as session:
            active = session.execute(
                select(
                    PrincipalRow.name,
                    SubmissionRow.family_kind,
                    SubmissionRow.key_id,
                    SubmissionRow.content_sha256,
                )
                .join(PrincipalRow, PrincipalRow.id == SubmissionRow.member_id)
                .where(SubmissionRow.status == "active")
                .order_by(PrincipalRow.name, SubmissionRow.family_kind)
            ).all()

            def count(model: Any) -> int:
                return int(session.scalar(select(func.count()).select_from(model)) or 0)

            principals = session.execute(
                select(PrincipalRow.name, PrincipalRow.role, PrincipalRow.revoked_at).order_by(
                    PrincipalRow.name
                )
            ).all()
            kinds = session.execute(
                select(KindParametersRow).order_by(KindParametersRow.kind)
            ).scalars()
            families = session.execute(
                select(MinHashParametersRow).order_by(MinHashParametersRow.family)
            ).scalars()
            audit = session.execute(
                select(AuditLogRow.id, AuditLogRow.actor, AuditLogRow.action, AuditLogRow.target)
                .where(AuditLogRow.action.not_in(sorted(RECORD_ONLY_ACTIONS)))
                .order_by(AuditLogRow.id)
            ).all()
            ledgers = session.execute(
                select(
                    PrincipalRow.name,
                    QueryLedgerRow.kind,
                    QueryLedgerRow.entries,
                    QueryLedgerRow.tokens,
                    QueryLedgerRow.asked_at,
                    QueryLedgerRow.updated_at,
                )
                .join(PrincipalRow, PrincipalRow.id == QueryLedgerRow.member_id)
                .order_by(PrincipalRow.name, QueryLedgerRow.kind)
            ).all()
            asked = session.execute(
                select(
                    PrincipalRow.name,
                    SubmissionRow.family_kind,
                    SubmissionRow.id,
                    SubmissionRow.tokens_asked,
                )
                .join(PrincipalRow, PrincipalRow.id == SubmissionRow.member_id)
                .order_by(SubmissionRow.id)
            ).all()
            return Snapshot(
                active=tuple((a, b, c, bytes(d)) for a, b, c, d in active),
                submissions=count(SubmissionRow),
                shared_indicators=count(SharedIndicatorRow),
                confirmations=count(ConfirmationRow),
                campaigns=count(CampaignRow),
                clusters=count(ClusterRow),
                keyring=(count(MemberKeyRow), count(KeyRotationRow), count(KeyEnvelopeRow)),
                principals=tuple((n, str(r), t is not None) for n, r, t in principals),
                kind_parameters=tuple(_columns(row) for row in kinds),
                minhash_parameters=tuple(_columns(row) for row in families),
                audit=tuple((i, a, b, c) for i, a, b, c in audit),
                ledgers=tuple((n, k, e, bytes(t), bytes(a), u) for n, k, e, t, a, u in ledgers),
                asked=tuple((n, k, i, a) for n, k, i, a in asked),
            )

    def ledger_tokens(self, member: str) -> set[bytes]:
        """The distinct e-mail tokens in ``member``'s query ledger."""
        return set(ledger_times(self.snapshot(), member))

    def check_refusal(self, outcome: Outcome, before: Snapshot, *, allowed: frozenset[Any]) -> None:
        """The shared invariants: an expected status with a message; a refusal changed
        nothing; an accepted request changed no query ledger or ``tokens_asked`` but its
        caller's."""
        assert outcome.code is not grpc.StatusCode.DEADLINE_EXCEEDED, "the hub hung"
        assert outcome.code in allowed, f"unexpected status {outcome.code}: {outcome.details!r}"
        after = self.snapshot()
        if outcome.code is not grpc.StatusCode.OK:
            assert outcome.details.strip(), f"{outcome.code} without a message"
            assert after == before, f"refused ({outcome.code}: {outcome.details}) but changed state"
        else:
            assert after.queries_of_others(outcome.caller) == before.queries_of_others(
                outcome.caller
            ), f"a request by {outcome.caller} changed another member's query ledger"

    def check_baseline(self) -> None:
        """The submitting members still get exactly their baseline answers, and every query
        ledger holds only tokens its member's own filter holds (nothing else is recorded)."""
        for member in SUBMITTERS:
            assert self.resolve_own(member) == self.baseline[member], member
        for member in MEMBERS:
            recorded = self.ledger_tokens(member)
            if not recorded:
                continue
            assert member in SUBMITTERS, f"{member} has no filter but a query ledger"
            array = np.frombuffer(b"".join(sorted(recorded)), dtype="<u8").reshape(-1, 2)
            assert self.forum.bloom(member).contains_tokens(array).all(), (
                f"{member}'s ledger records tokens its filter does not hold"
            )


def _columns(row: Any) -> tuple[Any, ...]:
    return tuple(
        getattr(row, column.key) for column in row.__table__.columns if column.key != "updated_at"
    )


@contextmanager
def fuzz_hub(tmp: Path) -> Iterator[FuzzHub]:
    """A started, provisioned hub with its baseline, over a fresh SQLite file in ``tmp``."""
    url = f"sqlite:///{tmp / 'hub.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    try:
        credentials = provision(engine)
        with session_scope(engine) as session:
            _, custodian = principals.add_principal(
                session,
                actor="fuzz-setup",
                name=CUSTODIAN,
                role=Role.CUSTODIAN,
                now=datetime.now(UTC),
            )
        credentials[CUSTODIAN] = custodian.token
        with running_hub(engine, credentials) as running:
            harness = FuzzHub(running, engine)
            harness.establish_baseline()
            yield harness
    finally:
        engine.dispose()


def ledger_times(snapshot: Snapshot, member: str) -> dict[bytes, int]:
    """``member``'s e-mail query ledger in ``snapshot``: token → when it was last asked (Unix
    seconds), decoded as the hub decodes it."""
    for name, kind, entries, tokens, asked_at, _ in snapshot.ledgers:
        if (name, kind) == (member, EMAIL):
            ledger = QueryLedger.decode(tokens, asked_at)
            words = np.empty((len(ledger), 2), dtype="<u8")
            words[:, 0], words[:, 1] = ledger.hi, ledger.lo
            raw = words.tobytes()
            found = {
                raw[TOKEN_BYTES * i : TOKEN_BYTES * (i + 1)]: int(t)
                for i, t in enumerate(ledger.asked_at.tolist())
            }
            assert len(found) == entries
            return found
    return {}
