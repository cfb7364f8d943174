"""Faults: the hub killed mid-upload and mid-aggregation, the connection dropped mid-download,
PostgreSQL restarted mid-sync. After each, the member recovers by re-running, and the scenario
ends with zero lost or duplicated submissions and aggregates equal to a clean recomputation:

* every member has exactly one active submission per kind, whose content digest is the SHA-256
  of its latest sketch (the member's local state, or the bytes it sent);
* the hub's stored count vector (after a fold triggered by a resolution) equals
  ``count_vector`` over the active filters decoded from their stored payloads, nothing is left
  pending, and the members count matches;
* resolutions downloaded after recovery equal ``resolution_for`` over that recomputation.

The hub runs as the installed ``sigshare-hub serve`` in a subprocess (so ``kill -9`` is a real
one), on an SQLite file in the test's own temporary directory, on a free loopback port; members
use the SDK in this process. Everything is ``pytest -n`` safe.

The PostgreSQL restart restarts the shared server, so it runs only in the long suite::

    SIGSHARE_DESTRUCTIVE=1 .venv/bin/pytest -q tests/security/test_faults.py -k postgresql

(with nothing else using the server; it needs ``pg_ctlcluster`` and the right to run it).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

from sigshare.client.errors import HubClientError
from sigshare.client.hub_client import HubClient, HubConnection, RetryPolicy
from sigshare.client.hub_types import Resolution
from sigshare.client.inputs import RejectSink
from sigshare.client.state import LocalState
from sigshare.client.sync import SyncJob
from sigshare.hub.domain import Role, SubmissionStatus
from sigshare.hub.services import parameters as parameter_service
from sigshare.hub.services import principals
from sigshare.hub.storage import (
    PrincipalRepository,
    SubmissionRepository,
    make_engine,
    migrate,
    session_scope,
)
from sigshare.hub.storage.aggregates import FamilyRepository
from sigshare.hub.storage.repositories import ParameterRepository
from sigshare.sketch.aggregate import resolution_for
from sigshare.sketch.bloom import BloomFilter, count_vector
from sigshare.sketch.codec import decode_bloom, encode_bloom
from sigshare.sketch.keys import ForumSecret
from sigshare.sketch.kinds import get_kind

BIN = Path(sys.executable).parent
KEY_ID = "k1"
ACTOR = "faults"
START_TIMEOUT = 60.0
CALL_TIMEOUT = 60.0
KIND = "email"
DESTRUCTIVE_ENV = "SIGSHARE_DESTRUCTIVE"
PG_URL_ENV = "SIGSHARE_TEST_PG_URL"
DEFAULT_PG_URL = "postgresql+psycopg2://root@127.0.0.1:5432/test"
PG_RESTART = ["pg_ctlcluster", "--skip-systemctl-redirect", "15", "main", "restart"]


# ---------------------------------------------------------------------------------- the hub


class HubProcess:
    """``sigshare-hub serve`` in a subprocess; restarted on the same port after a kill."""

    def __init__(self, url: str, directory: Path) -> None:
        self.url = url
        self.directory = directory
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.starts += 1
        port_file = self.directory / f"hub-{self.starts}.port"
        log_path = self.directory / f"hub-{self.starts}.log"
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    str(BIN / "sigshare-hub"),
                    "--db",
                    self.url,
                    "serve",
                    "--listen",
                    f"127.0.0.1:{self.port}",
                    "--insecure",
                    "--port-file",
                    str(port_file),
                    "--log-level",
                    "warning",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"the hub did not start:\n{log_path.read_text(errors='replace')}")
            time.sleep(0.02)
        self.port = int(port_file.read_text())

    def kill(self) -> None:
        """``kill -9``."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(30)
        assert self.process.returncode == -signal.SIGKILL

    def cpu_seconds(self) -> float:
        """User + system CPU time the hub process has used so far."""
        assert self.process is not None
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rpartition(")")[2].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def client(self, credential: str, target: str | None = None) -> HubClient:
        return HubClient(
            HubConnection(target=target or self.target, credential=credential, insecure=True),
            retry=RetryPolicy(attempts=1),
        )


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

    def submit_random(self, name: str, items: int, seed: int) -> None:
        """A filter of ``items`` random tokens, sent through the bare SDK."""
        with self.hub.client(self.credentials[name]) as client:
            published = client.get_parameters().bloom[KIND]
            bloom = BloomFilter(published.bloom_params())
            rng = np.random.default_rng(seed)
            bloom.add_tokens(rng.integers(0, 2**63, size=(items, 2), dtype=np.uint64))
            bloom.count = items
            payload = encode_bloom(bloom)
            client.submit(
                sketch_format="bloom",
                kind=KIND,
                key_id=KEY_ID,
                params_digest=published.digest,
                declared_count=items,
                payload=payload,
            )
        self.sent[name] = payload

    def download(self, name: str, target: str | None = None) -> Resolution:
        with self.hub.client(self.credentials[name], target) as client:
            return client.download_resolution(KIND, KEY_ID)

    def local_payload(self, name: str) -> bytes:
        with LocalState.open(self.state_dir(name)) as state:
            record = state.sketch(KIND)
        assert record is not None, f"{name} has no local {KIND} sketch"
        return record.payload


def provision(
    url: str, names: list[str], capacity: int, *, prompts: bool = False
) -> dict[str, str]:
    migrate.upgrade(url)
    engine = make_engine(url)
    now = datetime.now(UTC)
    credentials = {}
    try:
        with session_scope(engine) as session:
            parameter_service.set_kind_parameters(
                session,
                actor=ACTOR,
                kind=KIND,
                key_id=KEY_ID,
                capacity=capacity,
                target_fpr=1e-3,
                quorum=2,
                now=now,
            )
            if prompts:
                parameter_service.set_minhash_parameters(
                    session, actor=ACTOR, family="prompt", key_id=KEY_ID, threshold=0.5, now=now
                )
            for name in names:
                _, issued = principals.add_principal(
                    session, actor=ACTOR, name=name, role=Role.MEMBER, now=now
                )
                credentials[name] = issued.token
    finally:
        engine.dispose()
    return credentials


@contextmanager
def forum(
    directory: Path, names: list[str], capacity: int, url: str | None = None
) -> Iterator[Forum]:
    url = url or f"sqlite:///{directory / 'hub.db'}"
    credentials = provision(url, names, capacity)
    hub = HubProcess(url, directory)
    hub.start()
    try:
        yield Forum(url, directory, hub, ForumSecret.generate(KEY_ID), credentials)
    finally:
        hub.stop()


def write_emails(path: Path, values: list[str]) -> Path:
    path.write_text("kind,value,category\n" + "".join(f"email,{v},fraud\n" for v in values))
    return path


def emails(tag: str, count: int) -> list[str]:
    return [f"{tag}.{i:06d}@Example.org" for i in range(count)]


# ---------------------------------------------------------------------------------- checks


@dataclass
class Recomputed:
    counts: np.ndarray[Any, Any]
    own_bits: dict[str, np.ndarray[Any, Any]]
    quorum: int


def check_hub(url: str, expected: dict[str, bytes]) -> Recomputed:
    """Zero lost or duplicated submissions, and a count vector equal to a clean recomputation.

    ``expected``: member → the payload of its latest sketch. Call after a resolution folded.
    """
    engine = make_engine(url)
    try:
        with session_scope(engine) as session:
            submissions = SubmissionRepository(session)
            for name, payload in expected.items():
                principal = PrincipalRepository(session).get_by_name(name)
                assert principal is not None
                rows = submissions.of_member(principal.id)
                keys = [(s.family_kind, s.content_sha256) for s in rows]
                assert len(keys) == len(set(keys)), f"{name}: a submission is duplicated"
                active = [s for s in rows if s.status is SubmissionStatus.ACTIVE]
                assert [(s.family_kind, s.content_sha256) for s in active] == [
                    (KIND, hashlib.sha256(payload).digest())
                ], f"{name}: not exactly one active {KIND} submission of its latest sketch"
            to_add, to_remove = submissions.pending_fold(KIND)
            assert (to_add, to_remove) == ([], []), "a fold left counted flags pending"
            params = ParameterRepository(session).get_kind(KIND)
            assert params is not None
            active = submissions.all_active(KIND)
            assert all(s.counted for s in active)
            filters = {
                s.member_id: decode_bloom(submissions.payload(s.id), params.bloom_params())
                for s in active
            }
            stored = FamilyRepository(session).read_counts(KIND, params.m)
            clean = count_vector(filters.values())
            assert np.array_equal(stored, clean), (
                f"stored count vector differs from the recomputation at "
                f"{int(np.count_nonzero(stored.astype(np.int64) - clean))} positions"
            )
            state = FamilyRepository(session).get(KIND)
            assert state is not None
            assert state.members == len(active)
            names = {p.id: p.name for p in PrincipalRepository(session).list() if p.id in filters}
            own = {names[member]: bloom.bits for member, bloom in filters.items()}
            return Recomputed(clean, own, params.quorum)
    finally:
        engine.dispose()


def check_resolution(resolution: Resolution, recomputed: Recomputed, name: str) -> None:
    expected = resolution_for(recomputed.counts, recomputed.own_bits[name], recomputed.quorum)
    assert np.array_equal(resolution.counts, expected), f"{name}: resolution differs"
    assert resolution.members == len(recomputed.own_bits)


def counted_flags(url: str) -> tuple[list[bool], bool]:
    """The active submissions' counted flags, and whether the stored counts are all zero."""
    engine = make_engine(url)
    try:
        with session_scope(engine) as session:
            params = ParameterRepository(session).get_kind(KIND)
            assert params is not None
            flags = [s.counted for s in SubmissionRepository(session).all_active(KIND)]
            stored = FamilyRepository(session).read_counts(KIND, params.m)
            return flags, not stored.any()
    finally:
        engine.dispose()


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
        check_resolution(f.download("member"), recomputed, "member")
        found = resolved(f, "member")
        assert canonical_set(shared) <= found.keys(), "a shared address was lost"
        assert all(found[c] == 1 for c in canonical_set(shared))


# ---------------------------------------------------------------------------------- fold

BULK = 8
"""Members with large filters: their first resolution folds them all (a second or more)."""
BULK_CAPACITY = 2_000_000
BULK_ITEMS = 1_000_000
FOLD_CPU_BEFORE_KILL = 0.4
"""Hub CPU seconds into the first resolution before the kill: well inside the fold."""


def test_hub_killed_mid_aggregation_leaves_nothing_half_counted(tmp_path: Path) -> None:
    names = [f"bulk{i}" for i in range(BULK)]
    with forum(tmp_path, names, capacity=BULK_CAPACITY) as f:
        for index, name in enumerate(names):
            f.submit_random(name, BULK_ITEMS, seed=index)
        flags, zero = counted_flags(f.url)
        assert flags == [False] * BULK, "nothing is folded before a resolution"
        assert zero

        outcome: list[BaseException | Resolution] = []

        def first_resolution() -> None:
            try:
                outcome.append(f.download(names[0]))
            except BaseException as error:  # recorded for the main thread
                outcome.append(error)

        baseline = f.hub.cpu_seconds()
        caller = threading.Thread(target=first_resolution)
        caller.start()
        deadline = time.monotonic() + CALL_TIMEOUT
        while f.hub.cpu_seconds() - baseline < FOLD_CPU_BEFORE_KILL:
            assert not outcome, "the resolution finished before the kill: make the fold longer"
            assert time.monotonic() < deadline
            time.sleep(0.005)
        f.hub.kill()
        caller.join(CALL_TIMEOUT)
        (result,) = outcome
        assert isinstance(result, HubClientError), f"expected a failed call, got {result!r}"

        flags, zero = counted_flags(f.url)
        assert flags == [False] * BULK, f"the killed fold left counted flags {flags}"
        assert zero, "the killed fold left counts behind"

        f.hub.start()
        resolutions = {name: f.download(name) for name in names}
        recomputed = check_hub(f.url, dict(f.sent))
        for name, resolution in resolutions.items():
            check_resolution(resolution, recomputed, name)


# ---------------------------------------------------------------------------------- download


class Proxy:
    """A loopback TCP proxy that can cut every connection through it at once."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        self.closed = False
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
            for source, sink in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def sever(self) -> None:
        """Drop every connection (the listener stays: a re-run reconnects through it)."""
        with self.lock:
            sockets, self.sockets = self.sockets, []
        for end in sockets:
            with suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()

    def close(self) -> None:
        self.listener.close()
        self.sever()


def test_connection_dropped_mid_download_the_rerun_pull_gets_the_right_resolution(
    tmp_path: Path,
) -> None:
    bulk = [f"bulk{i}" for i in range(3)]
    shared = emails("shared", 500)
    with forum(tmp_path, [*bulk, "peer", "member"], capacity=BULK_CAPACITY) as f:
        for index, name in enumerate(bulk):
            f.submit_random(name, BULK_ITEMS, seed=100 + index)
        f.push("peer", write_emails(tmp_path / "peer.csv", shared + emails("peer", 500)))
        f.push("member", write_emails(tmp_path / "member.csv", shared + emails("member", 500)))
        proxy = Proxy(f.hub.port)
        try:
            received: list[int] = []

            def cut_after_first_chunk(done: int) -> None:
                received.append(done)
                if len(received) == 1:
                    proxy.sever()

            with pytest.raises(HubClientError):
                f.pull(
                    "member",
                    progress=progress_hook("downloading", cut_after_first_chunk),
                    target=f"127.0.0.1:{proxy.port}",
                )
            # The first chunk arrived, then the stream broke: the cut was mid-download.
            assert received, "the download never started"
            assert resolved(f, "member") == {}, "a broken download left resolved indicators"

            f.pull("member", target=f"127.0.0.1:{proxy.port}")  # the re-run
        finally:
            proxy.close()
        resolution = f.download("member")
        recomputed = check_hub(
            f.url,
            {
                "member": f.local_payload("member"),
                "peer": f.local_payload("peer"),
                **f.sent,
            },
        )
        check_resolution(resolution, recomputed, "member")
        found = resolved(f, "member")
        assert canonical_set(shared) <= found.keys(), "a shared address was lost"


# ---------------------------------------------------------------------------------- PostgreSQL


@contextmanager
def fresh_postgres_database(server: URL) -> Iterator[URL]:
    """A new, empty database on ``server``, dropped on exit (as in tests/hub/conftest.py)."""
    name = f"sigshare_faults_{secrets.token_hex(6)}"
    admin = create_engine(server, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            yield server.set(database=name)
        finally:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get(DESTRUCTIVE_ENV) != "1",
    reason=f"restarts the shared PostgreSQL server: set {DESTRUCTIVE_ENV}=1 (long suite only)",
)
def test_postgresql_restarted_mid_sync_nothing_lost_or_duplicated(tmp_path: Path) -> None:
    members = [f"m{i}" for i in range(8)]
    shared = emails("shared", 1_000)
    server: URL = make_url(os.environ.get(PG_URL_ENV, DEFAULT_PG_URL))
    with fresh_postgres_database(server) as database:
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
                check_resolution(f.download(name), recomputed, name)
                assert canonical_set(shared) <= resolved(f, name).keys()
