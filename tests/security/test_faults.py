"""Faults: the hub killed mid-upload and mid-resolution, the connection dropped while a Resolve
is being sent and while it is being answered, PostgreSQL restarted mid-sync. After each, the
member recovers by retrying or re-running, and the scenario ends with zero lost or duplicated
submissions, query ledgers never half-updated, and answers equal to a clean recomputation:

* every member has exactly one active submission per kind, whose content digest is the SHA-256
  of its latest sketch (the member's local state, or the bytes it sent);
* every answer equals the exact oracle over the active filters decoded from their stored
  payloads: ANSWERED for the member's own tokens, with the number of other members whose own
  filter holds the token (0 below quorum − 1);
* a member's query ledger is, at every point the test can observe, either as it was before a
  request or holds every token of it (never part of one), and ends holding exactly the distinct
  tokens the member asked about, with ``tokens_asked`` of its submission equal to their number;
  a retried or repeated request costs nothing and gets identical answers.

The hub runs as the installed ``sigshare-hub serve`` in a subprocess (so ``kill -9`` is a real
one), on an SQLite file in the test's own temporary directory, on a free loopback port; members
use the SDK in this process. Everything is ``pytest -n`` safe.

The PostgreSQL restart restarts the shared server, so it runs only in the long suite::

    SIGSHARE_DESTRUCTIVE=1 .venv/bin/pytest -q tests/security/test_faults.py -k postgresql

(with nothing else using the server; it needs ``pg_ctlcluster`` and the right to run it).
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from sigshare.client.errors import HubClientError
from sigshare.client.hub_client import HubClient, HubConnection, RetryPolicy
from sigshare.client.hub_types import ResolveResult
from sigshare.client.inputs import RejectSink
from sigshare.client.state import LocalState
from sigshare.client.sync import SyncJob
from sigshare.hub.matching.query_ledger import QueryLedger
from sigshare.hub.storage import make_engine, session_scope
from sigshare.hub.storage.models import QueryLedgerRow
from sigshare.hub.storage.principals import PrincipalRepository
from sigshare.hub.storage.submissions import SubmissionRepository
from sigshare.sketch.bloom import BloomFilter
from sigshare.sketch.codec import encode_bloom
from sigshare.sketch.keys import ForumSecret
from sigshare.sketch.kinds import get_kind
from sigshare.sketch.prf import TOKEN_BYTES
from tests.support.databases import fresh_postgres_database, postgres_server_url
from tests.support.forum import (
    KEY_ID,
    KIND,
    Recomputed,
    check_hub,
    provision_members,
    token_array,
    write_emails,
)
from tests.support.processes import HubProcess

CALL_TIMEOUT = 60.0
DESTRUCTIVE_ENV = "SIGSHARE_DESTRUCTIVE"
PG_RESTART = ["pg_ctlcluster", "--skip-systemctl-redirect", "15", "main", "restart"]


# ---------------------------------------------------------------------------------- the hub


@dataclass
class Forum:
    """A provisioned hub database, its process, the forum secret and the members."""

    url: str
    directory: Path
    hub: HubProcess
    secret: ForumSecret
    credentials: dict[str, str]
    sent: dict[str, bytes] = field(default_factory=dict)
    """Member → the payload of its latest filter sent through the bare SDK (no local state)."""
    tokens: dict[str, bytes] = field(default_factory=dict)
    """Member → the tokens of that filter, concatenated."""

    def state_dir(self, name: str) -> Path:
        return self.directory / f"state-{name}"

    @contextmanager
    def job(
        self,
        name: str,
        *,
        progress: Any = None,
        client_type: type[HubClient] = HubClient,
        target: str | None = None,
    ) -> Iterator[SyncJob]:
        connection = HubConnection(
            target=target or self.hub.target, credential=self.credentials[name], insecure=True
        )
        with (
            client_type(connection, retry=RetryPolicy(attempts=1)) as client,
            LocalState.open(self.state_dir(name)) as state,
        ):
            extra = {} if progress is None else {"progress": progress}
            yield SyncJob(client=client, state=state, secret=self.secret, **extra)

    def push(self, name: str, csv_path: Path, **options: Any) -> None:
        with self.job(name, **options) as job, RejectSink() as rejects:
            job.push([csv_path], [], rejects=rejects)

    def pull(self, name: str, **options: Any) -> None:
        with self.job(name, **options) as job:
            job.pull()

    def submit_tokens(self, name: str, tokens: bytes) -> None:
        """A filter of ``tokens`` (concatenated, distinct), sent through the bare SDK."""
        with self.hub.client(self.credentials[name]) as client:
            published = client.get_parameters().bloom[KIND]
            bloom = BloomFilter(published.bloom_params())
            bloom.add_tokens(token_array(tokens))
            bloom.count = len(tokens) // TOKEN_BYTES
            payload = encode_bloom(bloom)
            client.submit(
                sketch_format="bloom",
                kind=KIND,
                key_id=KEY_ID,
                params_digest=published.digest,
                declared_count=bloom.count,
                payload=payload,
            )
        self.sent[name] = payload
        self.tokens[name] = tokens

    def resolve(self, name: str, tokens: bytes, client: HubClient | None = None) -> ResolveResult:
        """Ask about ``tokens`` as ``name`` (through ``client`` when given)."""
        if client is not None:
            return client.resolve(KIND, KEY_ID, tokens)
        with self.hub.client(self.credentials[name]) as own:
            return own.resolve(KIND, KEY_ID, tokens)

    def state_tokens(self, name: str) -> bytes:
        """The tokens of the values in ``name``'s local state: what its pull asks about."""
        with LocalState.open(self.state_dir(name)) as state:
            return b"".join(state.indicator_tokens(KIND)[1])

    def local_payload(self, name: str) -> bytes:
        with LocalState.open(self.state_dir(name)) as state:
            record = state.sketch(KIND)
        assert record is not None, f"{name} has no local {KIND} sketch"
        return record.payload


@contextmanager
def forum(
    directory: Path, names: list[str], capacity: int, url: str | None = None
) -> Iterator[Forum]:
    url = url or f"sqlite:///{directory / 'hub.db'}"
    credentials = provision_members(url, names, capacity)
    hub = HubProcess(url, directory)
    hub.start()
    try:
        yield Forum(url, directory, hub, ForumSecret.generate(KEY_ID), credentials)
    finally:
        hub.stop()


def emails(tag: str, count: int) -> list[str]:
    return [f"{tag}.{i:06d}@Example.org" for i in range(count)]


# ---------------------------------------------------------------------------------- checks


def random_tokens(count: int, seed: int) -> bytes:
    """``count`` distinct pseudo-random tokens (what a member's values hash to)."""
    tokens = np.random.default_rng(seed).integers(0, 2**64, size=(count, 2), dtype=np.uint64)
    return tokens.astype("<u8").tobytes()


def check_answers(result: ResolveResult, recomputed: Recomputed, name: str, tokens: bytes) -> None:
    status, others = recomputed.answers(name, tokens)
    assert result.status.tolist() == status, f"{name}: statuses differ from the recomputation"
    assert result.others.tolist() == others, f"{name}: answers differ from the recomputation"
    assert result.members == len(recomputed.filters)
    assert result.quorum == recomputed.quorum


@dataclass(frozen=True)
class LedgerState:
    tokens: frozenset[bytes]
    """The distinct tokens in the member's query ledger of the kind."""
    tokens_asked: int
    """``tokens_asked`` of the member's active submission (0 without one)."""


def ledger_state(url: str, name: str) -> LedgerState:
    engine = make_engine(url)
    try:
        with session_scope(engine) as session:
            principal = PrincipalRepository(session).get_by_name(name)
            assert principal is not None
            row = session.execute(
                select(QueryLedgerRow.tokens, QueryLedgerRow.asked_at).where(
                    QueryLedgerRow.member_id == principal.id, QueryLedgerRow.kind == KIND
                )
            ).one_or_none()
            found: frozenset[bytes] = frozenset()
            if row is not None:
                ledger = QueryLedger.decode(row.tokens, row.asked_at)
                words = np.empty((len(ledger), 2), dtype="<u8")
                words[:, 0], words[:, 1] = ledger.hi, ledger.lo
                raw = words.tobytes()
                found = frozenset(raw[i : i + TOKEN_BYTES] for i in range(0, len(raw), TOKEN_BYTES))
            active = SubmissionRepository(session).active_of(principal.id, KIND)
            return LedgerState(found, 0 if active is None else active.tokens_asked)
    finally:
        engine.dispose()


def token_set(tokens: bytes) -> frozenset[bytes]:
    return frozenset(tokens[i : i + TOKEN_BYTES] for i in range(0, len(tokens), TOKEN_BYTES))


def check_ledger(url: str, name: str, tokens: bytes) -> None:
    """``name`` asked about exactly ``tokens`` (all its own), each counted once."""
    state = ledger_state(url, name)
    asked = token_set(tokens)
    assert state.tokens == asked, (
        f"{name}: ledger holds {len(state.tokens)} tokens, {len(asked)} were asked"
    )
    assert state.tokens_asked == len(asked)


def check_never_half(state: LedgerState, before: frozenset[bytes], tokens: bytes) -> bool:
    """The ledger after a broken request: as before it, or with every token of it. Returns
    whether the request was recorded."""
    if state.tokens == before:
        return False
    assert state.tokens == before | token_set(tokens), (
        f"half a request recorded: {len(state.tokens - before)} of "
        f"{len(token_set(tokens) - before)} new tokens"
    )
    return True


def resolved(forum: Forum, name: str) -> dict[str, int]:
    with LocalState.open(forum.state_dir(name)) as state:
        return {item.canonical: item.others for item in state.resolved(KIND)}


def canonical_set(values: list[str]) -> set[str]:
    canonicalise = get_kind(KIND).canonicalise
    return {canonicalise(v) for v in values}


def progress_hook(prefix: str, on_chunk: Callable[[int], None]) -> Callable[[str, int], Any]:
    """A SyncJob progress that calls ``on_chunk(bytes so far)`` for phases named ``prefix…``."""

    @contextmanager
    def progress(description: str, total: int) -> Iterator[Callable[..., None]]:
        done = 0

        def advance(amount: int = 1, *args: Any, **kwargs: Any) -> None:
            nonlocal done
            done += amount
            if description.startswith(prefix):
                on_chunk(done)

        yield advance

    return progress


# ---------------------------------------------------------------------------------- upload


class SmallChunks(HubClient):
    """The SDK sending 16 KiB chunks: a throttled upload has many chunks to be killed within."""

    def submit(self, **kwargs: Any) -> Any:
        kwargs.setdefault("chunk_bytes", 16 << 10)
        return super().submit(**kwargs)


def test_hub_killed_mid_upload_the_rerun_stores_exactly_one_submission(tmp_path: Path) -> None:
    shared = emails("shared", 2_000)
    with forum(tmp_path, ["peer", "member"], capacity=200_000) as f:
        f.push("peer", write_emails(tmp_path / "peer.csv", shared + emails("peer", 3_000)))
        own = emails("member", 60_000)
        csv_path = write_emails(tmp_path / "member.csv", shared + own)
        killed_at: list[int] = []

        def throttle_and_kill(sent: int) -> None:
            time.sleep(0.03)  # throttle: ~0.5 MB/s
            if sent >= 48 << 10 and not killed_at:
                killed_at.append(sent)
                f.hub.kill()

        with pytest.raises(HubClientError):
            f.push(
                "member",
                csv_path,
                progress=progress_hook("uploading", throttle_and_kill),
                client_type=SmallChunks,
            )
        payload = f.local_payload("member")
        assert killed_at, "the kill never happened"
        assert killed_at[0] < len(payload), "the kill did not land mid-upload"
        with session_scope(make_engine(f.url)) as session:
            principal = PrincipalRepository(session).get_by_name("member")
            assert principal is not None
            assert SubmissionRepository(session).of_member(principal.id) == [], (
                "a half-received upload left a submission"
            )

        f.hub.start()
        f.push("member", csv_path)  # the re-run: reuses the built sketch, uploads it whole
        f.pull("member")
        assert f.local_payload("member") == payload
        f.pull("peer")
        recomputed = check_hub(f.url, {"member": payload, "peer": f.local_payload("peer")})
        tokens = f.state_tokens("member")
        check_answers(f.resolve("member", tokens), recomputed, "member", tokens)
        check_ledger(f.url, "member", tokens)
        found = resolved(f, "member")
        assert canonical_set(shared) <= found.keys(), "a shared address was lost"
        assert all(found[c] == 1 for c in canonical_set(shared))


# ---------------------------------------------------------------------------------- resolution

BULK = 8
"""Members with large filters: the first Resolve builds the membership index over all of them
(about half a second of hub CPU: see CPU_BEFORE_KILL)."""
BULK_CAPACITY = 2_000_000
BULK_ITEMS = 1_000_000
SHARED_ITEMS = 50_000
"""Tokens every bulk member holds besides its own: answers with 7 other holders."""
ASKED = 200_000
"""Tokens the asking member sends: the shared ones and the first of its own."""
CPU_BEFORE_KILL = 0.3
"""Hub CPU seconds into the first Resolve before the kill: inside building the index (measured:
the cold Resolve takes about 0.7 s of hub CPU, a warm one 0.2 s, so the build is the 0.5 s
between receiving the tokens and answering them)."""


def bulk_forum(f: Forum, names: list[str], seed: int) -> None:
    shared = random_tokens(SHARED_ITEMS, seed)
    for index, name in enumerate(names):
        f.submit_tokens(name, shared + random_tokens(BULK_ITEMS - SHARED_ITEMS, seed + 1 + index))


def test_hub_killed_mid_resolution_records_nothing_and_the_retry_answers(tmp_path: Path) -> None:
    names = [f"bulk{i}" for i in range(BULK)]
    with forum(tmp_path, names, capacity=BULK_CAPACITY) as f:
        bulk_forum(f, names, seed=0)
        asker = names[0]
        tokens = f.tokens[asker][: ASKED * TOKEN_BYTES]
        outcome: list[BaseException | ResolveResult] = []

        def first_resolution() -> None:
            try:
                outcome.append(f.resolve(asker, tokens))
            except BaseException as error:  # recorded for the main thread
                outcome.append(error)

        baseline = f.hub.cpu_seconds()
        caller = threading.Thread(target=first_resolution)
        caller.start()
        deadline = time.monotonic() + CALL_TIMEOUT
        while f.hub.cpu_seconds() - baseline < CPU_BEFORE_KILL:
            assert not outcome, "the Resolve finished before the kill: make the index larger"
            assert time.monotonic() < deadline
            time.sleep(0.005)
        f.hub.kill()
        caller.join(CALL_TIMEOUT)
        (result,) = outcome
        assert isinstance(result, HubClientError), f"expected a failed call, got {result!r}"
        state = ledger_state(f.url, asker)
        assert not check_never_half(state, frozenset(), tokens), (
            "the killed Resolve was recorded: the kill landed after the commit"
        )
        assert state.tokens_asked == 0

        f.hub.start()
        recomputed = check_hub(f.url, dict(f.sent))
        answers = f.resolve(asker, tokens)
        check_answers(answers, recomputed, asker, tokens)
        assert int(answers.others.max()) == BULK - 1  # the shared tokens: every other member
        check_ledger(f.url, asker, tokens)
        again = f.resolve(asker, tokens)  # a repeat: identical, and free
        assert np.array_equal(again.status, answers.status)
        assert np.array_equal(again.others, answers.others)
        assert again.submission_tokens == answers.submission_tokens == len(token_set(tokens))
        check_ledger(f.url, asker, tokens)


# ---------------------------------------------------------------------------------- connection


class Proxy:
    """A loopback TCP proxy that can cut every connection through it at once."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        self.holding = threading.Event()
        """While set, bytes from the hub are dropped: the test cuts the connection next."""
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream))
            with self.lock:
                self.sockets += [downstream, upstream]
            for source, sink, hold in (
                (downstream, upstream, None),
                (upstream, downstream, self.holding),
            ):
                threading.Thread(target=self._pump, args=(source, sink, hold), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, hold: threading.Event | None) -> None:
        try:
            while data := source.recv(65536):
                if hold is None or not hold.is_set():
                    sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def sever(self) -> None:
        """Drop every connection and stop holding (the listener stays: a re-run reconnects
        through it)."""
        with self.lock:
            sockets, self.sockets = self.sockets, []
            self.holding.clear()
        for end in sockets:
            with suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()

    def close(self) -> None:
        self.listener.close()
        self.sever()


class Retried(HubClient):
    """The SDK retrying transient failures at once (no backoff): the test controls the wait."""

    def __init__(self, connection: HubConnection, on_retry: Callable[[], None]) -> None:
        super().__init__(
            connection,
            retry=RetryPolicy(attempts=3, initial_backoff=0.0),
            sleep=lambda _: on_retry(),
        )


def test_connection_dropped_while_sending_a_resolve_the_retry_gets_identical_answers(
    tmp_path: Path,
) -> None:
    """The stream breaks after the first 1 MiB chunk of tokens: the hub records nothing of the
    half-received request, and the SDK's retry gets the exact answers and records them once."""
    names = ["asker", "peer"]
    with forum(tmp_path, names, capacity=BULK_CAPACITY) as f:
        shared = random_tokens(20_000, 7)
        f.submit_tokens("peer", shared + random_tokens(30_000, 8))
        f.submit_tokens("asker", shared + random_tokens(130_000, 9))
        tokens = f.tokens["asker"]
        assert len(tokens) > 2 * (1 << 20), "the request must take several chunks"
        proxy = Proxy(f.hub.port)
        cuts: list[int] = []
        at_retry: list[LedgerState] = []

        def cut_after_first_chunk(sent: int) -> None:
            if not cuts:
                cuts.append(sent)
                proxy.sever()

        try:
            connection = HubConnection(
                target=f"127.0.0.1:{proxy.port}", credential=f.credentials["asker"], insecure=True
            )
            with Retried(connection, lambda: at_retry.append(ledger_state(f.url, "asker"))) as c:
                result = c.resolve(KIND, KEY_ID, tokens, on_progress=cut_after_first_chunk)
        finally:
            proxy.close()
        assert cuts, "the stream was never cut"
        assert cuts[0] < len(tokens) // TOKEN_BYTES, "the cut did not land mid-request"
        assert len(at_retry) == 1, "the SDK did not retry exactly once"
        assert not check_never_half(at_retry[0], frozenset(), tokens), (
            "the hub recorded a request it never fully received"
        )
        recomputed = check_hub(f.url, dict(f.sent))
        check_answers(result, recomputed, "asker", tokens)
        assert int(result.others.sum()) == len(token_set(shared))
        check_ledger(f.url, "asker", tokens)
        direct = f.resolve("asker", tokens)
        assert np.array_equal(direct.status, result.status)
        assert np.array_equal(direct.others, result.others)


def test_connection_dropped_while_answering_the_rerun_pull_gets_identical_answers(
    tmp_path: Path,
) -> None:
    """The hub commits a Resolve before it answers: the stream breaks after that (the proxy
    holds the answer back until the ledger shows the commit, then cuts), the member's pull fails
    and stores nothing, the ledger holds the whole request, and the re-run pull is answered
    identically at no cost."""
    shared = emails("shared", 500)
    with forum(tmp_path, ["peer", "member"], capacity=20_000) as f:
        f.push("peer", write_emails(tmp_path / "peer.csv", shared + emails("peer", 500)))
        f.push("member", write_emails(tmp_path / "member.csv", shared + emails("member", 500)))
        tokens = f.state_tokens("member")
        proxy = Proxy(f.hub.port)
        committed: list[LedgerState] = []
        held: list[int] = []

        def cut_once_committed() -> None:
            deadline = time.monotonic() + CALL_TIMEOUT
            while time.monotonic() < deadline:
                state = ledger_state(f.url, "member")
                if state.tokens:
                    committed.append(state)
                    break
                time.sleep(0.01)
            proxy.sever()

        def hold_answers(sent: int) -> None:
            # Runs before the request is closed, so before the hub can answer.
            if not held:
                held.append(sent)
                proxy.holding.set()
                threading.Thread(target=cut_once_committed, daemon=True).start()

        try:
            with pytest.raises(HubClientError):
                f.pull(
                    "member",
                    progress=progress_hook("resolving", hold_answers),
                    target=f"127.0.0.1:{proxy.port}",
                )
            assert held, "the Resolve never started"
            assert resolved(f, "member") == {}, "a broken pull left resolved indicators"
            assert committed, "the hub did not record the request before the cut"
            assert check_never_half(committed[0], frozenset(), tokens)
            check_ledger(f.url, "member", tokens)

            f.pull("member", target=f"127.0.0.1:{proxy.port}")  # the re-run
        finally:
            proxy.close()
        check_ledger(f.url, "member", tokens)  # the re-run cost nothing
        recomputed = check_hub(
            f.url, {"member": f.local_payload("member"), "peer": f.local_payload("peer")}
        )
        answers = f.resolve("member", tokens)
        check_answers(answers, recomputed, "member", tokens)
        found = resolved(f, "member")
        assert canonical_set(shared) <= found.keys(), "a shared address was lost"
        with LocalState.open(f.state_dir("member")) as state:
            canonicals = state.indicator_tokens(KIND)[0]
        expected = zip(canonicals, answers.others.tolist(), strict=True)
        assert found == {c: n for c, n in expected if n}, "the pull stored other answers"


# ---------------------------------------------------------------------------------- PostgreSQL


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get(DESTRUCTIVE_ENV) != "1",
    reason=f"restarts the shared PostgreSQL server: set {DESTRUCTIVE_ENV}=1 (long suite only)",
)
def test_postgresql_restarted_mid_sync_nothing_lost_or_duplicated(tmp_path: Path) -> None:
    members = [f"m{i}" for i in range(8)]
    shared = emails("shared", 1_000)
    with fresh_postgres_database(postgres_server_url(), "sigshare_faults") as database:
        url = database.render_as_string(hide_password=False)
        with forum(tmp_path, members, capacity=200_000, url=url) as f:
            files = {
                name: write_emails(tmp_path / f"{name}.csv", shared + emails(name, 20_000))
                for name in members
            }
            failures: dict[str, BaseException] = {}

            def sync(name: str) -> None:
                try:
                    f.push(name, files[name])
                    f.pull(name)
                except BaseException as error:  # recorded; the member re-runs
                    failures[name] = error

            threads = [threading.Thread(target=sync, args=(name,)) for name in members]
            for thread in threads:
                thread.start()
            time.sleep(0.5)
            subprocess.run(PG_RESTART, check=True, timeout=120)
            for thread in threads:
                thread.join(CALL_TIMEOUT * 2)
            # Every member re-runs its nightly job, failed or not (the real schedule).
            for name in members:
                f.push(name, files[name])
                f.pull(name)
            recomputed = check_hub(url, {name: f.local_payload(name) for name in members})
            for name in members:
                tokens = f.state_tokens(name)
                check_answers(f.resolve(name, tokens), recomputed, name, tokens)
                check_ledger(url, name, tokens)
                assert canonical_set(shared) <= resolved(f, name).keys()
