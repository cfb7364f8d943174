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
    :class:`FuzzHub` starts one real hub on loopback over a migrated SQLite file (insecure, like
    the integration tests), provisions it with ``hubtest.provision`` and records a baseline: two
    members' e-mail filters, one member's prompt clusters, and member ``m1``'s resolution.
    :meth:`FuzzHub.snapshot` captures the state a refused request must not change.
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import grpc
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "hub"))  # hubtest: the integration tests' hub helpers

import hubtest  # noqa: E402
from sqlalchemy import Engine, func, select  # noqa: E402

from sigshare.hub.storage import make_engine, migrate, session_scope  # noqa: E402
from sigshare.hub.storage.models import (  # noqa: E402
    AuditLogRow,
    CampaignRow,
    ClusterRow,
    ConfirmationRow,
    KindParametersRow,
    MinHashParametersRow,
    PrincipalRow,
    SharedIndicatorRow,
    SubmissionRow,
)
from sigshare.sketch.resolution import decode_resolution  # noqa: E402
from sigshare.v1 import hub_pb2 as pb  # noqa: E402

# ---------------------------------------------------------------------------------- budgets

EXAMPLES_ENV = "SIGSHARE_FUZZ_EXAMPLES"
OUTPUT = ROOT / "test-output" / "fuzz-cases.json"

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
        "resolution.read",
        "matches.read",
        "review.overlap",
        "review.indicators",
        "review.campaigns",
        "review.submissions",
        "principal.list",
        "audit.verify",
    }
)
"""Audit entries written for reads (before the read can fail): not state changes."""

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

ROLE_OF_SERVICE = {
    "sigshare.v1.MemberService": "m1",
    "sigshare.v1.ReviewService": hubtest.COORDINATOR,
    "sigshare.v1.AdminService": hubtest.ADMIN,
}


@dataclass(frozen=True)
class Outcome:
    code: grpc.StatusCode
    details: str
    responses: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class Snapshot:
    active: tuple[tuple[str, str, str, bytes], ...]
    submissions: int
    shared_indicators: int
    confirmations: int
    campaigns: int
    clusters: int
    principals: tuple[tuple[str, str, bool], ...]
    kind_parameters: tuple[tuple[Any, ...], ...]
    minhash_parameters: tuple[tuple[Any, ...], ...]
    audit: tuple[tuple[int, str, str, str], ...]


class FuzzHub:
    """One started hub, its principals' credentials, raw calls, and state snapshots."""

    def __init__(self, hub: hubtest.RunningHub, engine: Engine) -> None:
        self.hub = hub
        self.engine = engine
        self.forum = hubtest.EmailForum(
            dict(hubtest.overlapping_sets()), hubtest.email_prf(hubtest.forum_secret())
        )
        self.baseline_resolution: bytes = b""
        self.email_digest = b""
        self.prompt_digest = b""
        self.bloom_payload = b""
        self.cluster_payload = b""
        self.cluster_count = 0

    # --- setup

    def establish_baseline(self) -> None:
        """m1 and m2 submit e-mail filters, m1 its prompt clusters; m1's resolution is kept."""
        from sigshare.sketch.codec import encode_bloom

        params = self.hub.client("m1").get_parameters()
        self.email_digest = params.bloom[hubtest.EMAIL].digest
        self.prompt_digest = params.minhash[hubtest.PROMPT].digest
        for member in ("m1", "m2"):
            hubtest.submit_email(self.hub.client(member), self.forum, member)
        self.bloom_payload = encode_bloom(self.forum.bloom("m1"))
        prompts = hubtest.prompt_forum({"m1": (0, 1), "m2": (1,)})
        minhash = params.minhash[hubtest.PROMPT].minhash_params()
        upload = hubtest.cluster_upload(prompts, "m1", hubtest.forum_secret(), minhash)
        hubtest.submit_clusters(self.hub.client("m1"), upload)
        self.cluster_payload = upload.payload
        self.cluster_count = len(upload.clusters)
        self.baseline_resolution = self.resolution_counts("m1")

    def resolution_counts(self, member: str) -> bytes:
        found = self.hub.client(member).download_resolution(hubtest.EMAIL, hubtest.KEY_ID)
        return bytes(found.counts.tobytes())

    # --- calls

    def metadata(self, who: str | None) -> tuple[tuple[str, str], ...]:
        if who is None:
            return ()
        if who in self.hub.credentials:
            return self.hub.metadata(who)
        return (("authorization", who),)  # a raw (hostile) authorization value

    def role_for(self, method: str) -> str:
        return ROLE_OF_SERVICE[method.strip("/").split("/")[0]]

    def call_raw(
        self,
        method: str,
        payloads: list[bytes],
        *,
        who: str | None,
        timeout: float = RPC_TIMEOUT,
        cancel_after: int | None = None,
    ) -> Outcome:
        """Send ``payloads`` as the serialized request(s) of ``method``: bytes as they are."""
        channel = self.hub.channel
        cardinality, _ = METHODS[method]
        metadata = self.metadata(who)
        responses: list[bytes] = []
        try:
            if cardinality == "stream":
                call = channel.stream_unary(
                    method, request_serializer=None, response_deserializer=None
                )
                responses.append(call(iter(payloads), timeout=timeout, metadata=metadata))
            elif method in SERVER_STREAMING:
                call = channel.unary_stream(
                    method, request_serializer=None, response_deserializer=None
                )
                stream = call(payloads[0], timeout=timeout, metadata=metadata)
                for index, response in enumerate(stream):
                    responses.append(response)
                    if cancel_after is not None and index + 1 >= cancel_after:
                        stream.cancel()
                        return Outcome(grpc.StatusCode.CANCELLED, "cancelled", tuple(responses))
            else:
                call = channel.unary_unary(
                    method, request_serializer=None, response_deserializer=None
                )
                responses.append(call(payloads[0], timeout=timeout, metadata=metadata))
        except grpc.RpcError as error:
            failed: Any = error
            return Outcome(failed.code(), failed.details() or "", tuple(responses))
        return Outcome(grpc.StatusCode.OK, "", tuple(responses))

    def call(self, method: str, *messages: Any, who: str | None = "", **kwargs: Any) -> Outcome:
        """Send protobuf ``messages`` (several for Submit) as ``who`` (default: the service's
        role)."""
        caller = self.role_for(method) if who == "" else who
        return self.call_raw(
            method, [m.SerializeToString() for m in messages], who=caller, **kwargs
        )

    # --- state

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
                .where(AuditLogRow.action.not_in(sorted(READ_ACTIONS)))
                .order_by(AuditLogRow.id)
            ).all()
            return Snapshot(
                active=tuple((a, b, c, bytes(d)) for a, b, c, d in active),
                submissions=count(SubmissionRow),
                shared_indicators=count(SharedIndicatorRow),
                confirmations=count(ConfirmationRow),
                campaigns=count(CampaignRow),
                clusters=count(ClusterRow),
                principals=tuple((n, str(r), t is not None) for n, r, t in principals),
                kind_parameters=tuple(_columns(row) for row in kinds),
                minhash_parameters=tuple(_columns(row) for row in families),
                audit=tuple((i, a, b, c) for i, a, b, c in audit),
            )

    def check_refusal(self, outcome: Outcome, before: Snapshot, *, allowed: frozenset[Any]) -> None:
        """The shared invariants: an expected status with a message; a refusal changed
        nothing."""
        assert outcome.code is not grpc.StatusCode.DEADLINE_EXCEEDED, "the hub hung"
        assert outcome.code in allowed, f"unexpected status {outcome.code}: {outcome.details!r}"
        if outcome.code is not grpc.StatusCode.OK:
            assert outcome.details.strip(), f"{outcome.code} without a message"
            after = self.snapshot()
            assert after == before, f"refused ({outcome.code}: {outcome.details}) but changed state"

    def check_baseline(self) -> None:
        """The baseline member still gets exactly its baseline resolution."""
        assert self.resolution_counts("m1") == self.baseline_resolution


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
        credentials = hubtest.provision(engine)
        with hubtest.running_hub(engine, credentials) as running:
            harness = FuzzHub(running, engine)
            harness.establish_baseline()
            yield harness
    finally:
        engine.dispose()


def decode_counts(content: bytes, encoding: str, m: int) -> bytes:
    return bytes(decode_resolution(content, m, encoding).tobytes())
