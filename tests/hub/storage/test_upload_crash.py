"""kill -9 of a hub mid-upload leaves no orphan visible and no row without its blob.

A real ``sigshare-hub serve`` process, on each database with a blob directory, receives a
filter of several MiB from a member; it is killed with SIGKILL (1) while the stream is being
received into ``staging/``, and (2) the moment the blob is published, which is inside the
transaction that references it — before or after its commit, whichever the kill hits. After
each crash: every row's blob is present and matches its hash, the member's active submission is
the last one committed (the old one, or the new one whole), and a sweep leaves exactly the
referenced files. A restarted hub takes the upload again.
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
from sqlalchemy import Engine, func, select

from bench.hub_bench import (
    FPR,
    KEY_ID,
    MAX_MEMBERS,
    capacity_for,
    provision,
    replaceable_email,
)
from sigshare.client.errors import HubClientError
from sigshare.client.hub_client import HubClient, HubConnection, RetryPolicy
from sigshare.hub.services import payloads
from sigshare.hub.storage import make_engine, session_scope
from sigshare.hub.storage.blobs import BLOB_DIR_ENV, STAGING, BlobStore
from sigshare.hub.storage.models import SubmissionRow
from sigshare.hub.storage.submissions import SubmissionRepository
from sigshare.sketch.bloom import BloomFilter, BloomParams
from sigshare.sketch.codec import encode_bloom
from tests.support.processes import serve_replicas

FILTER_BYTES = 12 << 20
"""Large enough that receiving it takes many chunks, small enough for a quick test."""
KILL_AFTER_STAGED_BYTES = 2 << 20


@dataclass
class Forum:
    engine: Engine
    url: str
    credential: str
    capacity: int
    count: int
    payloads: list[bytes]


@pytest.fixture
def forum(database_url: str) -> Iterator[Forum]:
    capacity = capacity_for(FILTER_BYTES)
    params = BloomParams.for_forum("email", KEY_ID, capacity, FPR, MAX_MEMBERS)
    count = int(capacity * 0.9)
    engine = make_engine(database_url)
    try:
        # Migrating the migrated database is a no-op.
        credentials = provision(engine, 1, replaceable_email(capacity))
        yield Forum(
            engine=engine,
            url=database_url,
            credential=credentials["m00"],
            capacity=capacity,
            count=count,
            payloads=[encode_bloom(filter_at_fill(params, count, seed)) for seed in range(3)],
        )
    finally:
        engine.dispose()


def filter_at_fill(params: BloomParams, count: int, seed: int) -> BloomFilter:
    """A filter whose bits are independently set with the fill ``count`` items produce: what
    hashing that many values gives, as far as the hub's checks can tell, in a fraction of the
    time."""
    threshold = round(params.expected_fill(count) * 65536)
    draws = np.random.default_rng(seed).integers(0, 65536, size=params.m, dtype=np.uint16)
    return BloomFilter(params, np.packbits(draws < threshold, bitorder="little"), count)


def client_of(port: int, credential: str) -> HubClient:
    return HubClient(
        HubConnection(target=f"127.0.0.1:{port}", credential=credential, insecure=True),
        retry=RetryPolicy(attempts=1),
    )


def submit(client: HubClient, forum: Forum, payload: bytes) -> None:
    published = client.get_parameters().bloom["email"]
    client.submit(
        sketch_format="bloom",
        kind="email",
        key_id=KEY_ID,
        params_digest=published.digest,
        declared_count=forum.count,
        payload=payload,
    )


def submit_once(port: int, forum: Forum, payload: bytes) -> None:
    with client_of(port, forum.credential) as client:
        submit(client, forum, payload)


def submit_until_killed(port: int, forum: Forum, payload: bytes) -> threading.Thread:
    """Upload ``payload`` in a thread; the hub is killed under it, so the call must fail."""
    failures: list[BaseException] = []

    def run() -> None:
        with client_of(port, forum.credential) as client:
            try:
                submit(client, forum, payload)
            except (HubClientError, grpc.RpcError) as error:
                failures.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    thread.failures = failures  # type: ignore[attr-defined]
    return thread


def wait_for(condition: object, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.0005)


def published(store: BlobStore) -> set[str]:
    return set(store.names())


def staged_bytes(store: BlobStore) -> int:
    staging = store.root / STAGING
    if not staging.is_dir():
        return 0
    total = 0
    for entry in staging.iterdir():
        try:
            total += entry.stat().st_size
        except FileNotFoundError:
            continue
    return total


def active_content(engine: Engine) -> tuple[int, bytes | None]:
    """How many submission rows exist, and the active one's content hash."""
    with session_scope(engine) as session:
        rows = session.scalar(select(func.count()).select_from(SubmissionRow)) or 0
        active = SubmissionRepository(session).all_active("email")
        if not active:
            return rows, None
        (only,) = active
        payload = SubmissionRepository(session).payload(only.id)  # checks the blob's hash
        assert len(payload) == only.byte_size
        return rows, only.content_sha256


def assert_consistent(engine: Engine, store: BlobStore) -> None:
    """No row without its blob; after a sweep, exactly the referenced files."""
    census = payloads.census(engine)
    assert census is not None
    assert census.missing == frozenset()
    swept = payloads.sweep(engine, grace_seconds=0)  # no hub is running
    assert swept is not None
    after = payloads.census(engine)
    assert after is not None
    assert after.present == after.referenced
    assert after.staged == 0
    assert list((store.root / STAGING).iterdir()) == []


def kill(process: object) -> None:
    os.kill(process.pid, signal.SIGKILL)  # type: ignore[attr-defined]
    process.wait(30)  # type: ignore[attr-defined]


def test_kill_9_mid_upload_leaves_no_orphan_and_no_row_without_its_blob(
    forum: Forum, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blob_dir = tmp_path / "blobs"
    monkeypatch.setenv(BLOB_DIR_ENV, str(blob_dir))  # the serve processes inherit it
    store = BlobStore(blob_dir)
    hashes = [hashlib.sha256(p).digest() for p in forum.payloads]
    engine = make_engine(forum.url, blob_dir=blob_dir)

    try:
        # A first filter, stored whole.
        with serve_replicas(forum.url, _run_dir(tmp_path, "first"), 1) as (replica,):
            submit_once(replica.port, forum, forum.payloads[0])
        assert active_content(engine) == (1, hashes[0])

        # (1) Killed while the second filter streams into staging/.
        with serve_replicas(forum.url, _run_dir(tmp_path, "receiving"), 1) as (replica,):
            before = published(store)
            upload = submit_until_killed(replica.port, forum, forum.payloads[1])
            wait_for(lambda: staged_bytes(store) >= KILL_AFTER_STAGED_BYTES, "the upload to stage")
            kill(replica.process)
            upload.join(60)
            assert upload.failures  # type: ignore[attr-defined]
            assert published(store) == before  # nothing was published
            assert staged_bytes(store) > 0  # the crash left its staging file
        assert active_content(engine) == (1, hashes[0])  # the old filter, untouched
        assert_consistent(engine, store)

        # (2) Killed the moment the blob is published: inside the transaction that
        # references it, before or after its commit.
        with serve_replicas(forum.url, _run_dir(tmp_path, "publishing"), 1) as (replica,):
            before = published(store)
            upload = submit_until_killed(replica.port, forum, forum.payloads[1])
            wait_for(lambda: published(store) - before, "the blob to be published")
            kill(replica.process)
            upload.join(60)
        rows, active = active_content(engine)
        assert (rows, active) in {(1, hashes[0]), (2, hashes[1])}  # all or nothing
        assert_consistent(engine, store)

        # A restarted hub takes a new filter, and the store holds exactly its file.
        with serve_replicas(forum.url, _run_dir(tmp_path, "restarted"), 1) as (replica,):
            submit_once(replica.port, forum, forum.payloads[2])
        rows, active = active_content(engine)
        assert active == hashes[2]
        assert_consistent(engine, store)
        census = payloads.census(engine)
        assert census is not None
        assert len(census.referenced) == 1
    finally:
        engine.dispose()


def _run_dir(tmp_path: Path, name: str) -> Path:
    directory = tmp_path / name
    directory.mkdir()
    return directory
