"""The member job when things go wrong: a second run while one holds the lock, a crash or an
outage in the middle of an upload, an unreachable hub, bad credentials, refusals by the hub,
broken configuration and broken input — each leaves through its documented exit code, resumes
cleanly, keeps its local files private and never prints a secret. Also what is merely
unwelcome: a pull after the member's query budget is spent keeps its earlier answers and says
so, and a state file of the previous client is upgraded in place.

The hub runs in this process (the real servicers and authentication, over an SQLite file) with
one extra outermost interceptor that lets a test make ``Submit`` fail, hang after committing, or
change the forum's parameters for one member's calls. The member job runs as the installed
``sigshare`` script in subprocesses, because exit codes, locks and kills are process-level; peers
that only need to be present submit through the SDK in process.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import secrets
import signal
import socket
import sqlite3
import stat
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import grpc
import pytest
from sqlalchemy import Engine

from sigshare.client.exit_codes import ExitCode
from sigshare.client.hub_client import HubClient, HubConnection, RetryPolicy
from sigshare.client.inputs import INDICATOR_LINE_LIMIT, RejectSink
from sigshare.client.state import (
    SCHEMA_VERSION,
    STATE_FILE,
    CampaignMatchRecord,
    LocalState,
    SketchRecord,
    StateError,
)
from sigshare.client.sync import (
    LOCK_FILE,
    PullReport,
    PushReport,
    RunLock,
    SyncJob,
    classify_inputs,
)
from sigshare.client.synthetic import CAMPAIGN_TEMPLATES, WORDS
from sigshare.hub.domain import Role, Submission
from sigshare.hub.rpc import app
from sigshare.hub.rpc.server import build_server, parse_listen
from sigshare.hub.services import parameters as parameter_service
from sigshare.hub.services import principals
from sigshare.hub.storage import make_engine, migrate, session_scope
from sigshare.hub.storage.principals import PrincipalRepository
from sigshare.hub.storage.submissions import SubmissionRepository
from sigshare.sketch.keys import ForumSecret, write_secret_file
from tests.support.e2e import (
    KEY_ID,
    Command,
    Outcome,
    SecretWatch,
    canonical,
    client_env,
    finish,
    hub_cli,
    run,
    run_all,
    start,
    write_config,
    write_indicator_csv,
    write_private,
    write_prompts,
)

ACTOR = "test-setup"
SUBMIT = "/sigshare.v1.MemberService/Submit"
BUDGET_KIND = "payment_fingerprint"
CAPACITIES = {
    "email": 1_000,
    "phone": 1_000,
    "ip": 1_000,
    "username": 1_000,
    "device_id": 8,
    BUDGET_KIND: 8,
}
"""Each kind's capacity; a member's daily query budget of a kind is its capacity."""
REPLACE_INTERVALS = {BUDGET_KIND: 0}
"""Kinds whose filters a member may replace at once (others keep the hub's default)."""
FORUM_FPR = 1e-3
MEMBERS = (
    "peer",
    "lock",
    "crash",
    "killed",
    "revoked",
    "capacity",
    "nofamily",
    "midflight",
    "input",
    "unreadable",
    "secrets",
    "epoch",
    "withdraw-a",
    "withdraw-b",
    "not-enabled",
    "budget",
    "budget-peer",
)
SHARED = tuple(f"Shared.{i:02d}@Example.org" for i in range(30))
"""Addresses the peer holds; each test member that needs matches holds its own slice of them
(spelt differently), so every shared one has exactly one other holder."""
TIMEOUT_SECONDS = 1.0
"""Per-call deadline for the unreachable-hub tests."""
START_SLACK_SECONDS = 20.0
"""Room for interpreter start-up on a loaded machine, on top of any computed budget."""
BAD_PERMISSIONS = 0o644
LOCKED_EXIT = int(getattr(ExitCode, "BUSY", ExitCode.FAILURE))
"""Exit code of a run refused because another holds the lock (BUSY where the client has it)."""


# ---------------------------------------------------------------------------------- the hub

Behaviour = Callable[[Callable[[Any, grpc.ServicerContext], Any], Any, grpc.ServicerContext], Any]
"""Replaces a Submit call's body: ``behaviour(real_handler, request_iterator, context)``."""


class SubmitFaults(grpc.ServerInterceptor):
    """Per-credential behaviour around ``Submit``: how a test makes the hub misbehave."""

    def __init__(self) -> None:
        self._behaviours: dict[str, Behaviour] = {}

    @contextmanager
    def injected(self, credential: str, behaviour: Behaviour) -> Iterator[None]:
        self._behaviours[credential] = behaviour
        try:
            yield
        finally:
            del self._behaviours[credential]

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        if handler is None or handler_call_details.method != SUBMIT:
            return handler
        bearer = next(
            (
                value.partition(" ")[2]
                for key, value in handler_call_details.invocation_metadata or ()
                if key == "authorization" and isinstance(value, str)
            ),
            "",
        )
        behaviour = self._behaviours.get(bearer)
        inner = handler.stream_unary
        if behaviour is None or inner is None:
            return handler
        return grpc.stream_unary_rpc_method_handler(
            lambda requests, context: behaviour(inner, requests, context),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def fake_credential() -> str:
    """Well-formed, but no hub ever issued it."""
    return f"sgs1_{secrets.token_hex(8)}_{secrets.token_urlsafe(32)[:43]}"


@dataclass
class Member:
    name: str
    credential: str
    config: Path
    state_dir: Path
    hub: Hub

    def command(self, command: str, *args: str | Path, umask: int = 0o022) -> Command:
        return Command(
            [command, "--config", str(self.config), *(str(a) for a in args)],
            self.hub.env,
            self.hub.directory,
            umask=umask,
        )

    def run(self, command: str, *args: str | Path) -> Outcome:
        return run(self.command(command, *args), self.hub.watch)

    def sketch(self, name: str) -> SketchRecord | None:
        with LocalState.open(self.state_dir) as state:
            return state.sketch(name)

    def resolved(self) -> dict[tuple[str, str], int]:
        with LocalState.open(self.state_dir) as state:
            return {(item.kind, item.canonical): item.others for item in state.resolved()}

    def emails(self, shared: Sequence[str] = (), own: int = 15) -> Path:
        """``shared`` addresses (spelt in lower case) and ``own`` of the member's own."""
        rows = [("email", value.lower(), "fraud") for value in shared]
        rows += [("email", f"{self.name}.{i:02d}@example.net", "fraud") for i in range(own)]
        return write_indicator_csv(self.hub.directory / f"{self.name}-emails.csv", rows)


@dataclass
class Hub:
    directory: Path
    url: str
    engine: Engine
    port: int
    faults: SubmitFaults
    credentials: dict[str, str]
    secret: ForumSecret
    secret_file: Path
    watch: SecretWatch
    env: dict[str, str]

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def member(
        self,
        name: str,
        *,
        label: str | None = None,
        credential: str | None = None,
        address: str | None = None,
        secret_file: Path | None = None,
        timeout_seconds: float = 10.0,
        extra: Mapping[str, Any] | None = None,
    ) -> Member:
        """A member's configuration (retries = 1) under ``label`` (default: its name)."""
        label = label or name
        credential = credential or self.credentials[name]
        credential_file = write_private(self.directory / f"{label}.cred", credential + "\n")
        state_dir = self.directory / f"state-{label}"
        config = write_config(
            self.directory / f"{label}.toml",
            hub=address or self.target,
            credential_file=credential_file,
            secret_file=secret_file or self.secret_file,
            state_dir=state_dir,
            retries=1,
            timeout_seconds=timeout_seconds,
            extra=extra,
        )
        return Member(name, credential, config, state_dir, self)

    def active_submissions(self, name: str) -> list[Submission]:
        with session_scope(self.engine) as session:
            principal = PrincipalRepository(session).get_by_name(name)
            assert principal is not None
            return SubmissionRepository(session).of_member(principal.id)

    def published_digest(self, kind: str) -> bytes:
        with HubClient(
            HubConnection(target=self.target, credential=self.credentials["peer"], insecure=True),
            retry=RetryPolicy(attempts=1),
        ) as client:
            return client.get_parameters().bloom[kind].digest

    @contextmanager
    def job(self, member: Member) -> Iterator[tuple[SyncJob, LocalState]]:
        """The member's sync job in this process (the SDK without retries)."""
        with (
            HubClient(
                HubConnection(target=self.target, credential=member.credential, insecure=True),
                retry=RetryPolicy(attempts=1),
            ) as client,
            LocalState.open(member.state_dir) as state,
        ):
            yield SyncJob(client=client, state=state, secret=self.secret), state

    def push_in_process(
        self, member: Member, *files: Path, rejects_file: Path | None = None
    ) -> PushReport:
        """A push of ``files`` (classified as the CLI does), without a subprocess."""
        indicator_files, prompt_files = classify_inputs(files)
        with self.job(member) as (job, _), RejectSink(rejects_file) as rejects:
            return job.push(indicator_files, prompt_files, rejects=rejects)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    directory = tmp_path_factory.mktemp("robustness")
    url = f"sqlite:///{directory / 'hub.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    now = datetime.now(UTC)
    credentials: dict[str, str] = {}
    with session_scope(engine) as session:
        for kind, capacity in CAPACITIES.items():
            parameter_service.set_kind_parameters(
                session,
                actor=ACTOR,
                kind=kind,
                key_id=KEY_ID,
                capacity=capacity,
                forum_fpr=FORUM_FPR,
                quorum=2,
                replace_interval_seconds=REPLACE_INTERVALS.get(kind),
                now=now,
            )
        parameter_service.set_minhash_parameters(
            session, actor=ACTOR, family="prompt", key_id=KEY_ID, threshold=0.5, now=now
        )
        for name in MEMBERS:
            _, issued = principals.add_principal(
                session, actor=ACTOR, name=name, role=Role.MEMBER, now=now
            )
            credentials[name] = issued.token
    secret = ForumSecret.generate(KEY_ID)
    secret_file = write_secret_file(directory / "forum.secret", secret)
    watch = SecretWatch()
    watch.add_forum_secret(secret)
    for name, credential in credentials.items():
        watch.add_credential(name, credential)

    faults = SubmitFaults()

    def with_faults(*args: Any, **kwargs: Any) -> Any:
        kwargs["interceptors"] = [faults, *kwargs.get("interceptors", ())]
        return build_server(*args, **kwargs)

    # build_hub exactly as served, with the fault interceptor outermost.
    with mock.patch.object(app, "build_server", with_faults):
        server = app.build_hub(engine, parse_listen("127.0.0.1:0"), tls=None, insecure=True)
    server.server.start()
    home = directory / "home"
    home.mkdir()
    try:
        yield Hub(
            directory=directory,
            url=url,
            engine=engine,
            port=server.port,
            faults=faults,
            credentials=credentials,
            secret=secret,
            secret_file=secret_file,
            watch=watch,
            env=client_env(home),
        )
    finally:
        server.stop(0)
        engine.dispose()


@pytest.fixture(scope="module")
def peer(hub: Hub) -> Member:
    """Another member holding :data:`SHARED` (and addresses of its own)."""
    member = hub.member("peer")
    rows = [("email", value, "fraud") for value in SHARED]
    rows += [("email", f"peer.{i:02d}@example.net", "fraud") for i in range(25)]
    hub.push_in_process(member, write_indicator_csv(hub.directory / "peer-emails.csv", rows))
    return member


def shared_truth(held: Sequence[str]) -> dict[tuple[str, str], int]:
    """What a member holding ``held`` of :data:`SHARED` must learn: one other holder each."""
    return {("email", canonical("email", value)): 1 for value in held}


# ---------------------------------------------------------------------------------- lock


def _waiting_for_flock(pid: int) -> bool:
    """Whether ``pid`` is blocked on an flock (a ``->`` line in /proc/locks)."""
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "->" in fields and "FLOCK" in fields and str(pid) in fields:
            return True
    return False


def test_second_run_fails_fast_naming_the_lock_and_wait_waits(hub: Hub) -> None:
    member = hub.member("lock")
    member.state_dir.mkdir(mode=0o700)
    lock_path = member.state_dir / LOCK_FILE
    with RunLock(member.state_dir):
        refused = member.run("sync", "--json").expect(LOCKED_EXIT)
        assert str(lock_path) in refused.stderr
        assert f"pid {os.getpid()}" in refused.stderr
        assert refused.json()["exit_code"] == LOCKED_EXIT
        assert refused.seconds < START_SLACK_SECONDS

        process, started = start(member.command("sync", "--wait", "--json"))
        try:
            deadline = time.monotonic() + START_SLACK_SECONDS
            while not _waiting_for_flock(process.pid):
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, "sync --wait never blocked on the lock"
                time.sleep(0.05)
            time.sleep(0.3)
            assert process.poll() is None, "sync --wait ran while the lock was held"
        except BaseException:
            process.kill()
            process.communicate()
            raise
    waited = finish(process, started, hub.watch, 60.0).ok()
    assert waited.json()["push"]["submissions"] == []


# ---------------------------------------------------------------------------------- crashes


def test_failed_upload_exits_6_and_the_next_run_reuses_the_built_sketch(
    hub: Hub, peer: Member
) -> None:
    member = hub.member("crash")
    held = SHARED[:10]
    emails = member.emails(held)
    attempts: list[float] = []

    def hub_down(inner: Any, requests: Any, context: grpc.ServicerContext) -> Any:
        attempts.append(time.monotonic())
        context.abort(grpc.StatusCode.UNAVAILABLE, "hub restarting (injected)")

    with hub.faults.injected(member.credential, hub_down):
        failed = member.run("push", "--json", emails).expect(6)
    assert len(attempts) == 2, "retries = 1: two attempts"
    assert failed.json()["status"] == "network"
    assert "Submit" in failed.json()["error"]
    built = member.sketch("email")
    assert built is not None, "the sketch was built before the upload failed"
    assert built.submission_id is None
    assert hub.active_submissions("crash") == []

    resumed = member.run("sync", "--json", emails).ok().json()
    (email,) = resumed["push"]["submissions"]
    assert email["unchanged"] is False
    after = member.sketch("email")
    assert after is not None
    assert (after.built_at, after.payload, after.input_digest) == (
        built.built_at,
        built.payload,
        built.input_digest,
    ), "the unchanged input was sketched again instead of reusing the stored sketch"
    assert after.submission_id == email["submission_id"]
    active = hub.active_submissions("crash")
    assert [(s.family_kind, s.id) for s in active] == [("email", email["submission_id"])]
    assert resumed["pull"]["shared_indicators"] == {"email": len(held)}
    assert member.resolved() == shared_truth(held)


def test_sync_killed_mid_upload_resumes_without_a_duplicate_submission(
    hub: Hub, peer: Member
) -> None:
    """kill -9 after the hub committed the submission but before the member heard back."""
    member = hub.member("killed")
    held = SHARED[10:20]
    emails = member.emails(held)
    committed = threading.Event()
    release = threading.Event()

    def answer_lost(inner: Any, requests: Any, context: grpc.ServicerContext) -> Any:
        response = inner(requests, context)
        committed.set()
        release.wait(60)
        return response

    with hub.faults.injected(member.credential, answer_lost):
        process, _ = start(member.command("sync", "--json", emails))
        try:
            assert committed.wait(60), "the upload never reached the hub"
            process.send_signal(signal.SIGKILL)
            stdout, stderr = process.communicate(timeout=30)
        finally:
            release.set()
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert process.returncode == -signal.SIGKILL
    hub.watch.check(stdout + stderr, "the killed sync")
    built = member.sketch("email")
    assert built is not None
    assert built.submission_id is None, "the answer never arrived"
    (stored,) = hub.active_submissions("killed")

    resumed = member.run("sync", "--json", emails).ok().json()
    (email,) = resumed["push"]["submissions"]
    assert email["unchanged"] is True, "the hub should recognise the identical sketch"
    assert email["submission_id"] == stored.id
    after = member.sketch("email")
    assert after is not None
    assert (after.built_at, after.payload) == (built.built_at, built.payload)
    assert after.submission_id == stored.id
    assert [s.id for s in hub.active_submissions("killed")] == [stored.id]
    assert resumed["pull"]["shared_indicators"] == {"email": len(held)}
    assert member.resolved() == shared_truth(held)


# ---------------------------------------------------------------------------------- network


def test_unreachable_hub_exits_6_within_the_retry_budget(hub: Hub) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    # Accepts TCP connections (the kernel does) but never speaks HTTP/2: every call times out.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        refused = hub.member(
            "refused",
            credential=fake_credential(),
            address=f"127.0.0.1:{closed_port}",
            timeout_seconds=TIMEOUT_SECONDS,
        )
        hanging = hub.member(
            "hanging",
            credential=fake_credential(),
            address=f"127.0.0.1:{silent.getsockname()[1]}",
            timeout_seconds=TIMEOUT_SECONDS,
        )
        hub.watch.add_credential("refused", refused.credential)
        hub.watch.add_credential("hanging", hanging.credential)
        outcomes = run_all(
            [refused.command("sync", "--json"), hanging.command("sync", "--json")], hub.watch
        )
    attempts = 2  # retries = 1
    budget = attempts * TIMEOUT_SECONDS + RetryPolicy().initial_backoff
    for outcome in outcomes:
        document = outcome.expect(6).json()
        assert document["status"] == "network"
        assert f"after {attempts} attempts" in document["error"]
    assert outcomes[0].seconds < budget + START_SLACK_SECONDS
    assert attempts * TIMEOUT_SECONDS <= outcomes[1].seconds < budget + START_SLACK_SECONDS


# ---------------------------------------------------------------------------------- auth


def test_wrong_credential_exits_4(hub: Hub) -> None:
    stranger = hub.member("secrets", label="stranger", credential=fake_credential())
    hub.watch.add_credential("stranger", stranger.credential)
    document = stranger.run("sync", "--json").expect(4).json()
    assert document["status"] == "auth"


def test_revoked_credential_exits_4_on_the_next_run(hub: Hub) -> None:
    member = hub.member("revoked")
    emails = member.emails()
    hub.push_in_process(member, emails)  # the credential works
    hub_cli(hub.url, "member", "revoke", "revoked")
    document = member.run("sync", "--json", emails).expect(4).json()
    assert document["status"] == "auth"
    assert "revoked" in document["error"]


# ---------------------------------------------------------------------------------- refusals


def test_hub_refusals_exit_7(hub: Hub) -> None:
    over = hub.member("capacity")
    devices = write_indicator_csv(
        hub.directory / "devices.csv",
        [("device_id", f"device-{i:04d}", "") for i in range(CAPACITIES["device_id"] + 1)],
    )
    nofamily = hub.member("nofamily", extra={"prompt_family": "no-such-family"})
    prompts = write_prompts(hub.directory / "nofamily.prompts.jsonl", ["a prompt"] * 3)
    too_many, no_family = run_all(
        [over.command("push", "--json", devices), nofamily.command("push", "--json", prompts)],
        hub.watch,
    )
    document = too_many.expect(7).json()
    assert "capacity" in document["error"]
    assert document["status"] == "rejected"
    assert "no-such-family" in no_family.expect(7).json()["error"]
    assert hub.active_submissions("capacity") == []
    assert hub.active_submissions("nofamily") == []


def test_parameters_changed_mid_upload_exit_7_and_the_next_run_rebuilds(hub: Hub) -> None:
    member = hub.member("midflight")
    usernames = write_indicator_csv(
        hub.directory / "usernames.csv", [("username", f"Handle_{i}", "") for i in range(40)]
    )

    def forum_changes_parameters(inner: Any, requests: Any, context: grpc.ServicerContext) -> Any:
        with session_scope(hub.engine) as session:
            parameter_service.set_kind_parameters(
                session,
                actor=ACTOR,
                kind="username",
                key_id=KEY_ID,
                capacity=2 * CAPACITIES["username"],
                forum_fpr=FORUM_FPR,
                now=datetime.now(UTC),
            )
        return inner(requests, context)

    with hub.faults.injected(member.credential, forum_changes_parameters):
        failed = member.run("push", "--json", usernames).expect(7).json()
    assert "parameters changed" in failed["error"]
    assert hub.active_submissions("midflight") == []
    stale = member.sketch("username")
    assert stale is not None

    resumed = member.run("push", "--json", usernames).ok().json()
    (submission,) = resumed["submissions"]
    rebuilt = member.sketch("username")
    assert rebuilt is not None
    assert rebuilt.params_digest == hub.published_digest("username") != stale.params_digest
    assert rebuilt.submission_id == submission["submission_id"]
    assert [s.id for s in hub.active_submissions("midflight")] == [submission["submission_id"]]


# ---------------------------------------------------------------------------------- config


def test_configuration_problems_exit_3(hub: Hub) -> None:
    missing = Command(
        ["sync", "--json", "--config", str(hub.directory / "no-such.toml")],
        hub.env,
        hub.directory,
    )
    loose = hub.directory / "loose.secret"
    loose.write_bytes(hub.secret_file.read_bytes())
    loose.chmod(BAD_PERMISSIONS)
    loose_secret = hub.member("secrets", label="loose-secret", secret_file=loose)
    loose_credential = hub.member("secrets", label="loose-credential")
    (hub.directory / "loose-credential.cred").chmod(BAD_PERMISSIONS)
    writable = hub.member("secrets", label="writable-config")
    writable.config.chmod(0o664)
    next_epoch = ForumSecret.generate("k2")
    hub.watch.add_forum_secret(next_epoch)
    other_epoch = write_secret_file(hub.directory / "k2.secret", next_epoch)
    stale_secret = hub.member("epoch", secret_file=other_epoch)
    emails = stale_secret.emails(own=3)
    outcomes = run_all(
        [
            missing,
            loose_secret.command("sync", "--json"),
            loose_credential.command("sync", "--json"),
            writable.command("sync", "--json"),
            stale_secret.command("push", "--json", emails),
        ],
        hub.watch,
    )
    documents = [outcome.expect(3).json() for outcome in outcomes]
    assert all(d["status"] == "config" for d in documents)
    assert "no configuration at" in documents[0]["error"]
    assert str(loose) in documents[1]["error"]
    assert f"chmod 600 {loose}" in documents[1]["error"]
    assert "hub credential file" in documents[2]["error"]
    assert "chmod 600" in documents[3]["error"]
    assert "'k2'" in documents[4]["error"]  # a forum secret of another key epoch
    assert hub.active_submissions("epoch") == []


# ---------------------------------------------------------------------------------- input

OVERSIZED = INDICATOR_LINE_LIMIT + 100


@dataclass
class InputRun:
    member: Member
    outcome: Outcome
    files: dict[str, Path]
    expected: dict[tuple[str, int], str]
    """(file key, line number) → reason, for every rejected row."""


@pytest.fixture(scope="module")
def input_run(hub: Hub) -> InputRun:
    """One sync over files with known bad rows, with umask 0 and a state dir not made yet."""
    member = hub.member("input")
    assert not member.state_dir.exists()
    csv_lines = [
        b"kind,value,category",
        b"email,Alice.Example@Example.org,fraud",
        b"email,bob@example.org,fraud",
        b"email,not-an-email,fraud",
        b"email,\xff\xfeuser@example.org,fraud",
        b"email," + b"x" * OVERSIZED + b"@example.org,fraud",
        b"frobnicator,whatever,fraud",
        b"phone,+44 20 7946 0123,fraud",
        b"email,carol@example.org,fraud,surplus",
        b"email,BOB@example.org,fraud",
    ]
    jsonl_lines = [
        b'{"kind": "email", "value": "dave@example.org"}',
        b'{"kind": "email", "value": ',
        b"[1, 2]",
        b'{"kind": "ip", "value": "198.51.100.7"}',
    ]
    prompt_lines = [
        b'{"text": "summarise the following article in three bullet points please"}',
        b"this is not json",
        b'{"text": ""}',
        b'{"text": "caf\xe9 au lait"}',
    ]
    files = {
        "csv": hub.directory / "input.csv",
        "jsonl": hub.directory / "input.jsonl",
        "prompts": hub.directory / "input.prompts.jsonl",
    }
    for key, lines in (("csv", csv_lines), ("jsonl", jsonl_lines), ("prompts", prompt_lines)):
        files[key].write_bytes(b"\n".join(lines) + b"\n")
    expected = {
        ("csv", 4): "bad_syntax",
        ("csv", 5): "bad_encoding",
        ("csv", 6): "oversized_line",
        ("csv", 7): "unknown_kind",
        ("csv", 9): "bad_csv",
        ("jsonl", 2): "bad_json",
        ("jsonl", 3): "bad_json",
        ("prompts", 2): "bad_json",
        ("prompts", 3): "empty",
        ("prompts", 4): "bad_encoding",
    }
    outcome = run(member.command("sync", "--json", *files.values(), umask=0), hub.watch)
    return InputRun(member, outcome, files, expected)


def test_bad_rows_are_counted_by_reason_and_kept_in_a_private_rejects_file(
    input_run: InputRun,
) -> None:
    document = input_run.outcome.ok().json()
    push = document["push"]
    assert push["rejects"] == dict(Counter(input_run.expected.values()))
    assert push["rejected"] == len(input_run.expected)
    assert push["rows"] == 7  # 4 CSV rows, 2 JSONL rows, 1 prompt
    items = {s["name"]: s["items"] for s in push["submissions"]}
    assert {k: items[k] for k in ("email", "ip", "phone")} == {"email": 3, "ip": 1, "phone": 1}

    rejects_file = Path(push["rejects_file"])
    assert rejects_file == input_run.member.state_dir / "rejects.jsonl"
    assert stat.S_IMODE(rejects_file.stat().st_mode) == 0o600
    records = [json.loads(line) for line in rejects_file.read_text().splitlines()]
    sources = {str(path): key for key, path in input_run.files.items()}
    found = {}
    for record in records:
        path, _, line = record["source"].rpartition(":")
        found[(sources[path], int(line))] = record["reason"]
    assert found == input_run.expected
    by_source = {record["source"]: record for record in records}
    assert by_source[f"{input_run.files['csv']}:4"]["line"] == "email,not-an-email,fraud"
    oversized = by_source[f"{input_run.files['csv']}:6"]
    assert oversized["line_truncated"] is True
    assert len(oversized["line"]) < OVERSIZED


def test_state_files_are_private_whatever_the_umask(input_run: InputRun) -> None:
    input_run.outcome.ok()
    state_dir = input_run.member.state_dir
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in state_dir.iterdir()}
    assert {"state.db", LOCK_FILE, "rejects.jsonl"} <= modes.keys()
    assert set(modes.values()) == {oct(0o600)}, modes


def test_unreadable_inputs_exit_5(hub: Hub) -> None:
    no_kind = hub.directory / "no-kind-column.csv"
    no_kind.write_text("value,category\nsomeone@example.org,fraud\n")
    empty = hub.directory / "empty.csv"
    empty.write_text("")
    corrupt = hub.directory / "corrupt.csv.gz"
    corrupt.write_bytes(gzip.compress(b"kind,value\n" * 100)[:40] + b"\x00garbage" * 8)
    missing = hub.directory / "never-exported.csv"
    cases = [
        (no_kind, "no kind column"),
        (empty, "no header row"),
        (corrupt, "unreadable"),
        (missing, "does not exist"),
    ]
    outcomes = run_all(
        [
            hub.member("unreadable", label=f"unreadable-{i}").command("sync", "--json", path)
            for i, (path, _) in enumerate(cases)
        ],
        hub.watch,
    )
    for outcome, (path, problem) in zip(outcomes, cases, strict=True):
        document = outcome.expect(5).json()
        assert document["status"] == "input"
        assert str(path) in document["error"]
        assert problem in document["error"]


# ---------------------------------------------------------------------------------- secrets


def test_secrets_never_appear_in_any_output(hub: Hub, peer: Member) -> None:
    """Every command in this module is checked (see :func:`tests.support.e2e.run`); these are the
    failures most tempted to quote what they read, and the chattiest successes."""
    wrong = fake_credential()
    hub.watch.add_credential("wrong", wrong)
    wrong_file = write_private(hub.directory / "wrong.cred", wrong + "\n")
    two_words = hub.member("secrets", label="two-words")
    write_private(two_words.config.with_suffix(".cred"), f"{two_words.credential} extra\n")
    broken = hub.directory / "broken.secret"
    write_private(broken, hub.secret_file.read_text().replace('secret = "', 'secret = "!', 1))
    broken_secret = hub.member("secrets", label="broken-secret", secret_file=broken)
    chatty = hub.member("secrets", label="chatty")
    bad_row = write_indicator_csv(
        hub.directory / "chatty.csv",
        [("email", "not-an-email", ""), ("email", "chatty@example.net", "")],
    )
    init = Command(
        [
            "init",
            *("--hub", hub.target, "--insecure"),
            *("--credential-file", str(wrong_file), "--secret-file", str(hub.secret_file)),
            *("--state-dir", str(hub.directory / "state-init"), "--config"),
            str(hub.directory / "init.toml"),
        ],
        hub.env,
        hub.directory,
    )
    outcomes = run_all(
        [
            init,
            two_words.command("sync"),
            broken_secret.command("sync"),
            chatty.command("sync", bad_row),
            peer.command("status"),
        ],
        hub.watch,
    )
    assert [o.returncode for o in outcomes] == [4, 3, 3, 0, 0], [o.stderr for o in outcomes]
    assert "peer" in outcomes[4].stdout


# ---------------------------------------------------------------------------------- known bugs


def test_rows_of_a_kind_the_hub_does_not_enable_are_counted_per_row_and_kept(hub: Hub) -> None:
    member = hub.member("not-enabled")
    rows = [
        ("domain", "example.org", ""),
        ("domain", "Example.ORG", ""),
        ("domain", "example.com", ""),
    ]
    rows.append(("email", "someone@example.net", ""))
    rejects_file = hub.directory / "not-enabled.rejects.jsonl"
    report = hub.push_in_process(
        member,
        write_indicator_csv(hub.directory / "domains.csv", rows),
        rejects_file=rejects_file,
    )
    assert [kind.name for kind in report.kinds] == ["email"]
    # Counted per row; one line in the rejects file says how many rows of the kind were held back.
    (line,) = [json.loads(text) for text in rejects_file.read_text().splitlines()]
    assert dict(report.rejects) == {"kind_not_enabled": 3}
    assert (line["reason"], line["rows"], line["source"]) == ("kind_not_enabled", 3, "kind domain")


def test_a_prompt_file_with_a_bad_first_row_is_still_read_as_prompts(tmp_path: Path) -> None:
    path = tmp_path / "export.prompts.jsonl"
    rows = [json.dumps({"txt": "a misspelt field"})]
    rows += [json.dumps({"text": f"translate sentence {i} into French"}) for i in range(5)]
    path.write_text("\n".join(rows) + "\n")
    assert classify_inputs([path]) == ([], [path])


@dataclass
class Withdrawal:
    """Member A shares a campaign with B, then its prompts no longer contain it."""

    before: list[CampaignMatchRecord]
    after: list[CampaignMatchRecord]
    reported_after: int
    peer_after: list[CampaignMatchRecord]
    active_after: list[Submission]


@pytest.fixture(scope="module")
def withdrawal(hub: Hub) -> Withdrawal:
    rng = random.Random(5)  # reproducible test data

    def campaign(count: int) -> list[str]:
        template = CAMPAIGN_TEMPLATES[0]
        return [
            template.format(subject="physics", slot=" ".join(rng.choices(WORDS, k=10)))
            for _ in range(count)
        ]

    def organic(count: int) -> list[str]:
        return [" ".join(rng.choices(WORDS, k=30)) + "?" for _ in range(count)]

    a, b = hub.member("withdraw-a"), hub.member("withdraw-b")
    hub.push_in_process(a, write_prompts(hub.directory / "a1.prompts.jsonl", campaign(8)))
    hub.push_in_process(b, write_prompts(hub.directory / "b.prompts.jsonl", campaign(8)))
    with hub.job(a) as (job, state):
        job.pull()
        before = state.campaign_matches()
    hub.push_in_process(a, write_prompts(hub.directory / "a2.prompts.jsonl", organic(8)))
    with hub.job(a) as (job, state):
        reported = job.pull().campaign_clusters
        after = state.campaign_matches()
    with hub.job(b) as (job, state):
        job.pull()
        peer_after = state.campaign_matches()
    return Withdrawal(before, after, reported, peer_after, hub.active_submissions("withdraw-a"))


def test_a_campaign_two_members_see_is_matched(withdrawal: Withdrawal) -> None:
    (match,) = withdrawal.before
    assert match.other_members == 1
    assert len(match.prompts) == 8


def test_a_campaign_the_member_no_longer_sees_leaves_its_matches(withdrawal: Withdrawal) -> None:
    assert withdrawal.reported_after == 0
    assert withdrawal.after == []


def test_a_campaign_the_member_no_longer_sees_is_withdrawn_at_the_hub(
    withdrawal: Withdrawal,
) -> None:
    # What stays active is an empty cluster set: it superseded the one holding the campaign.
    assert [(s.family_kind, s.declared_count) for s in withdrawal.active_after] == [
        ("minhash:prompt", 0)
    ]
    assert withdrawal.peer_after == []


# ---------------------------------------------------------------------------------- query budgets

PEER_FINGERPRINTS = (
    "fp_a_shared_1",
    "fp_a_shared_2",
    "fp_b_shared_new",
    "fp_c_shared_1",
    "fp_c_shared_2",
    "fp_peer_own_1",
    "fp_peer_own_2",
    "fp_peer_own_3",
)
FIRST_FINGERPRINTS = (
    "fp_a_shared_1",
    "fp_a_shared_2",
    "fp_c_shared_1",
    "fp_c_shared_2",
    "fp_d_own_1",
    "fp_d_own_2",
    "fp_d_own_3",
    "fp_d_own_4",
)
"""Eight values: the first pull spends the member's whole daily budget (the capacity, 8)."""
SECOND_FINGERPRINTS = (
    "fp_a_shared_1",
    "fp_a_shared_2",
    "fp_b_own_new",
    "fp_b_shared_new",
    "fp_c_shared_1",
    "fp_c_shared_2",
)
"""The replacing filter's values, in the order the pull asks about them (canonical order).

The hub charges a request token by token: a token is answered when every budget it costs has
room. ``fp_a_*`` and ``fp_c_*``, asked within the day under the previous filter, cost only the
new submission's budget (6): answered. ``fp_b_*`` would be the day's 9th and 10th distinct
tokens: over budget — ``fp_b_shared_new``, which the peer holds, is not learned yet."""
KEPT_AND_NEW = {
    (BUDGET_KIND, value): 1
    for value in ("fp_a_shared_1", "fp_a_shared_2", "fp_c_shared_1", "fp_c_shared_2")
}
"""What the member knows after the second pull: its shared values, each held by one other."""


@dataclass
class BudgetRun:
    first: Outcome
    """``sigshare sync --json`` of the first values (push and pull)."""
    first_pull: tuple[datetime, datetime]
    """Around the first sync: the hub's daily budget frees a day after that pull."""
    report: PullReport
    """The pull after the filter was replaced: the daily budget is spent."""
    resolved: dict[tuple[str, str], int]
    pull_json: Outcome
    pull_human: Outcome
    sync_json: Outcome
    """``sigshare sync --json`` without files: only its pull does anything."""
    matches: Outcome


@pytest.fixture(scope="module")
def budget_run(hub: Hub) -> BudgetRun:
    def fingerprints(name: str, values: Sequence[str]) -> Path:
        return write_indicator_csv(
            hub.directory / f"{name}.csv", [(BUDGET_KIND, value, "carding") for value in values]
        )

    hub.push_in_process(hub.member("budget-peer"), fingerprints("budget-peer", PEER_FINGERPRINTS))
    member = hub.member("budget")
    before = datetime.now(UTC)
    first = member.run("sync", "--json", fingerprints("budget-1", FIRST_FINGERPRINTS)).ok()
    after = datetime.now(UTC)
    hub.push_in_process(member, fingerprints("budget-2", SECOND_FINGERPRINTS))
    with hub.job(member) as (job, _):
        report = job.pull()
    return BudgetRun(
        first=first,
        first_pull=(before, after),
        report=report,
        resolved=member.resolved(),
        pull_json=member.run("pull", "--json").ok(),
        pull_human=member.run("pull").ok(),
        sync_json=member.run("sync", "--json").ok(),
        matches=member.run("matches", "--json").ok(),
    )


def test_a_pull_within_the_daily_budget_answers_every_value(budget_run: BudgetRun) -> None:
    pull = budget_run.first.json()["pull"]
    assert pull["shared_indicators"] == {BUDGET_KIND: 4}


def test_values_over_the_query_budget_keep_their_earlier_answers(budget_run: BudgetRun) -> None:
    report = budget_run.report
    assert report.over_budget == {BUDGET_KIND: 2}  # fp_b_*
    assert report.not_held == {}
    assert report.shared_indicators == {BUDGET_KIND: len(KEPT_AND_NEW)}
    before, after = budget_run.first_pull
    frees_at = report.budget_frees_at[BUDGET_KIND]
    assert frees_at is not None
    # A day after the first pull, which ran in [before, after].
    assert before + timedelta(days=1) <= frees_at
    assert frees_at <= after + timedelta(days=1)
    assert budget_run.resolved == KEPT_AND_NEW


def test_pull_and_matches_show_the_kept_answers(budget_run: BudgetRun) -> None:
    assert budget_run.pull_json.json()["shared_indicators"] == {BUDGET_KIND: len(KEPT_AND_NEW)}
    assert budget_run.pull_human.stdout.startswith(
        f"pulled: {len(KEPT_AND_NEW)} shared indicators, 0 campaigns ("
    )
    assert budget_run.matches.json() == {
        "pulled": True,
        "indicators": [
            {
                "kind": kind,
                "value": value,
                "category": "carding",
                "other_members": others,
                "forum_status": None,
                "forum_note": None,
            }
            for (kind, value), others in sorted(KEPT_AND_NEW.items())
        ],
        "campaigns": [],
    }


def test_pull_says_which_values_the_budget_left_unanswered(budget_run: BudgetRun) -> None:
    frees_at = budget_run.report.budget_frees_at[BUDGET_KIND]
    assert frees_at is not None
    document = budget_run.pull_json.json()
    assert document["over_budget"] == {BUDGET_KIND: 2}
    assert document["budget_frees_at"] == {BUDGET_KIND: frees_at.isoformat()}
    assert document["not_held"] == {}
    assert budget_run.pull_json.stderr == ""  # --json: the document says it all
    # `sync` reports its pull alike (its timing is the whole run's, outside "pull").
    pulled = {
        key: value
        for key, value in document.items()
        if key not in {"seconds", "outcome", "skipped"}  # the run's, not the pull's
    }
    assert budget_run.sync_json.json()["pull"] == pulled
    assert budget_run.pull_human.stderr.splitlines() == [
        f"warning: {BUDGET_KIND}: the hub's query budget is spent: 2 values were not answered "
        "this time (earlier answers kept); the next pull after "
        f"{frees_at.isoformat(timespec='minutes')} asks again"
    ]


# ---------------------------------------------------------------------------------- older state

STATE_V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE indicators (
    kind TEXT NOT NULL,
    canonical TEXT NOT NULL,
    value TEXT NOT NULL,
    token BLOB NOT NULL,
    category TEXT NOT NULL,
    first_seen TEXT,
    last_seen TEXT,
    PRIMARY KEY (kind, canonical)
) WITHOUT ROWID;
CREATE TABLE sketches (
    name TEXT PRIMARY KEY,
    format TEXT NOT NULL,
    key_id TEXT NOT NULL,
    params_digest BLOB NOT NULL,
    input_digest BLOB NOT NULL,
    payload BLOB NOT NULL,
    declared_count INTEGER NOT NULL,
    built_at TEXT NOT NULL,
    submission_id INTEGER,
    submitted_at TEXT
);
CREATE TABLE prompts (
    family TEXT NOT NULL,
    id INTEGER NOT NULL,
    text TEXT NOT NULL,
    category TEXT NOT NULL,
    account TEXT,
    ts TEXT,
    cluster_id TEXT,
    PRIMARY KEY (family, id)
);
CREATE INDEX ix_prompts_cluster ON prompts (family, cluster_id);
CREATE TABLE clusters (
    family TEXT NOT NULL,
    cluster_id TEXT NOT NULL,
    row_index INTEGER NOT NULL,
    volume INTEGER NOT NULL,
    category TEXT NOT NULL,
    first_seen TEXT,
    last_seen TEXT,
    PRIMARY KEY (family, cluster_id)
);
CREATE TABLE resolved (
    kind TEXT NOT NULL,
    canonical TEXT NOT NULL,
    others INTEGER NOT NULL,
    PRIMARY KEY (kind, canonical)
) WITHOUT ROWID;
CREATE TABLE resolutions (
    kind TEXT PRIMARY KEY,
    members INTEGER NOT NULL,
    quorum INTEGER NOT NULL,
    fill_ratio REAL NOT NULL,
    computed_at TEXT NOT NULL
);
CREATE TABLE campaign_matches (
    family TEXT NOT NULL,
    cluster_id TEXT NOT NULL,
    campaign_id TEXT NOT NULL,
    similarity REAL NOT NULL,
    other_members INTEGER NOT NULL,
    other_member_names TEXT NOT NULL,
    PRIMARY KEY (family, cluster_id)
);
CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    command TEXT NOT NULL,
    outcome TEXT,
    summary TEXT
);
INSERT INTO meta VALUES ('schema_version', '1');
"""
"""The state file of the previous client (schema version 1), as it created it."""
V1_INDICATORS = (
    ("email", "alice@example.org", "Alice@Example.org", "fraud"),
    ("email", "bob@example.org", "bob@example.org", ""),
    ("email", "carol@example.org", "carol@example.org", "fraud"),
    ("phone", "+442079460123", "+44 20 7946 0123", "sim-farm"),
)
V1_RESOLVED = (
    ("email", "alice@example.org", 2),
    ("email", "bob@example.org", 1),
    ("phone", "+442079460123", 1),
)


def write_v1_state(state_dir: Path) -> Path:
    """A private state directory holding a schema-1 file with indicators and a resolution."""
    state_dir.mkdir(mode=0o700)
    path = state_dir / STATE_FILE
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600))
    with closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA journal_mode = WAL")  # as the previous client opened it
        db.executescript(STATE_V1_SCHEMA)
        db.executemany(
            "INSERT INTO indicators VALUES (?, ?, ?, ?, ?, NULL, NULL)",
            [
                (kind, canonical_value, value, secrets.token_bytes(16), category)
                for kind, canonical_value, value, category in V1_INDICATORS
            ],
        )
        db.executemany("INSERT INTO resolved VALUES (?, ?, ?)", V1_RESOLVED)
        db.execute(
            "INSERT INTO resolutions VALUES ('email', 3, 2, 0.42, '2026-01-05T00:00:00+00:00')"
        )
        db.commit()
    return path


def _schema(path: Path) -> tuple[str, list[str], list[str]]:
    """The file's schema version and the columns of ``resolved`` and ``resolutions``."""
    with closing(sqlite3.connect(path)) as db:
        (version,) = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        resolved = [row[1] for row in db.execute("PRAGMA table_info(resolved)")]
        resolutions = [row[1] for row in db.execute("PRAGMA table_info(resolutions)")]
    return version, resolved, resolutions


def test_a_state_file_of_the_previous_client_is_upgraded_and_keeps_its_matches(hub: Hub) -> None:
    member = hub.member("v1-state", credential=fake_credential())  # nothing here calls the hub
    hub.watch.add_credential("v1-state", member.credential)
    path = write_v1_state(member.state_dir)

    matches = member.run("matches", "--json").ok().json()
    # The rows the previous client had resolved (no forum verdicts pulled yet).
    unreviewed = {"forum_status": None, "forum_note": None}
    assert matches == {
        "pulled": True,
        "indicators": [
            {
                "kind": "email",
                "value": "Alice@Example.org",
                "category": "fraud",
                "other_members": 2,
                **unreviewed,
            },
            {
                "kind": "email",
                "value": "bob@example.org",
                "category": "",
                "other_members": 1,
                **unreviewed,
            },
            {
                "kind": "phone",
                "value": "+44 20 7946 0123",
                "category": "sim-farm",
                "other_members": 1,
                **unreviewed,
            },
        ],
        "campaigns": [],
    }
    assert _schema(path) == (
        str(SCHEMA_VERSION),
        ["kind", "canonical", "others", "names"],
        ["kind", "members", "quorum", "answered", "over_budget", "computed_at"],
    )
    assert SCHEMA_VERSION == 3
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    with LocalState.open(member.state_dir) as state:  # opening again changes nothing
        assert [(i.kind, i.canonical, i.others, i.other_names) for i in state.resolved()] == [
            (kind, value, others, ()) for kind, value, others in V1_RESOLVED
        ]
        # The upgraded file takes the new client's answers; an unanswered value keeps its row.
        state.replace_resolved(
            "email",
            members=4,
            quorum=2,
            others=[("alice@example.org", 3, ("m1", "m2", "m3")), ("carol@example.org", 0, ())],
            unanswered=["bob@example.org"],
            at=datetime.now(UTC),
        )
        assert [(i.canonical, i.others, i.other_names) for i in state.resolved("email")] == [
            ("alice@example.org", 3, ("m1", "m2", "m3")),
            ("bob@example.org", 1, ()),
        ]
    assert _schema(path)[0] == str(SCHEMA_VERSION)


def test_two_commands_opening_an_old_state_file_at_once_both_succeed(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    path = write_v1_state(state_dir)
    outcomes: list[str] = []

    def open_state() -> None:
        try:
            LocalState.open(state_dir).close()
            outcomes.append("ok")
        except StateError as error:
            outcomes.append(str(error))

    # A writer holds the file while both open it: each reads the old version, then waits.
    with closing(sqlite3.connect(path, isolation_level=None)) as writer:
        writer.execute("BEGIN IMMEDIATE")
        threads = [threading.Thread(target=open_state) for _ in range(2)]
        for thread in threads:
            thread.start()
        time.sleep(2.0)
        writer.execute("COMMIT")
    for thread in threads:
        thread.join(60)
    assert outcomes == ["ok", "ok"]
    assert _schema(path)[0] == str(SCHEMA_VERSION)
