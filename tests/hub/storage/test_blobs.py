"""The hub's payload blob store: files named by their SHA-256, staged while they arrive,
published before the row that references them commits, retired when the row goes and swept
after a grace period (sigshare.hub.storage.blobs); the repository, the services and the CLI
on top of it, on SQLite and on PostgreSQL."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, text

from sigshare.client.errors import HubRejectedError
from sigshare.hub.cli import cli
from sigshare.hub.domain import SubmissionStatus
from sigshare.hub.errors import InvalidArgumentError, NotFoundError, PreconditionError
from sigshare.hub.services import payloads
from sigshare.hub.storage import blobs, make_engine, session_scope
from sigshare.hub.storage.blobs import (
    FLUSH_EVERY_BYTES,
    STAGING,
    BlobStore,
    is_blob_name,
    store_for,
)
from sigshare.hub.storage.database import blob_directory
from sigshare.hub.storage.submissions import SubmissionRepository
from sigshare.sketch.codec import encode_bloom
from tests.support.cli import invoke_hub
from tests.support.databases import empty_tables
from tests.support.hub import (
    email_forum,
    provision,
    running_hub,
    submit_email,
)
from tests.support.rows import T0, add_member, add_submission

NAME = re.compile(r"[0-9a-f]{64}-[0-9a-f]{16}")
HOUR = 3600.0
LONG_AGO = 10 * HOUR


@pytest.fixture(autouse=True)
def _no_blob_dir_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test chooses its own blob directory: none leaks in from the caller's shell."""
    monkeypatch.delenv(blobs.BLOB_DIR_ENV, raising=False)


@pytest.fixture
def umask_022() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _age(path: Path, seconds: float = LONG_AGO) -> None:
    """Set the file's mtime ``seconds`` into the past."""
    then = time.time() - seconds
    os.utime(path, (then, then))


def _staging_files(store: BlobStore) -> list[Path]:
    staging = store.root / STAGING
    return sorted(staging.iterdir()) if staging.is_dir() else []


# --- BlobStore: put, read, names ---------------------------------------------------------------


@pytest.mark.usefixtures("umask_022")
def test_put_then_read_round_trips_in_a_private_fanned_out_layout(tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    store = BlobStore(root)
    payload = bytes(range(256)) * 40 + b"\x00"
    name = store.put(payload)

    assert NAME.fullmatch(name)
    assert is_blob_name(name)
    assert name[:64] == hashlib.sha256(payload).hexdigest()
    path = root / name[:2] / name
    assert store.path(name) == path
    assert path.read_bytes() == payload
    assert store.read(name) == payload
    assert list(store.names()) == [name]
    # 0700 directories and 0600 files although the umask would give 0755 and 0644.
    for directory in (root, root / STAGING, root / name[:2]):
        assert directory.is_dir()
        assert _mode(directory) == 0o700, directory
    assert _mode(path) == 0o600
    assert _staging_files(store) == []  # published: nothing left in staging


@pytest.mark.usefixtures("umask_022")
def test_the_same_bytes_put_twice_are_two_blobs(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    first, second = store.put(b"same bytes"), store.put(b"same bytes")
    assert first != second
    assert first[:64] == second[:64] == hashlib.sha256(b"same bytes").hexdigest()
    assert sorted(store.names()) == sorted([first, second])
    assert store.read(first) == store.read(second) == b"same bytes"
    # The same fan-out directory, created once, still 0700 after the second put.
    assert store.path(first).parent == store.path(second).parent
    assert _mode(store.path(first).parent) == 0o700
    assert _mode(store.path(second)) == 0o600


def test_an_empty_payload_is_a_blob_too(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    name = store.put(b"")
    assert name.startswith(hashlib.sha256(b"").hexdigest())
    assert store.read(name) == b""


def test_reading_a_damaged_blob_is_an_error_naming_the_damage(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    payload = b"a sketch of some member" * 100
    name = store.put(payload)
    path = store.path(name)
    damaged = bytearray(path.read_bytes())
    damaged[len(damaged) // 2] ^= 0x01
    path.write_bytes(bytes(damaged))
    with pytest.raises(InvalidArgumentError, match=r"does not match its SHA-256") as caught:
        store.read(name)
    assert name in str(caught.value)
    assert "damaged or replaced" in str(caught.value)

    # A file swapped for another blob's content (same length or not) is refused the same way.
    other = store.put(b"another member's sketch")
    path.write_bytes(store.path(other).read_bytes())
    with pytest.raises(InvalidArgumentError, match="does not match its SHA-256"):
        store.read(name)


def test_reading_a_missing_blob_is_not_found(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    absent = hashlib.sha256(b"never stored").hexdigest() + "-" + "0" * 16
    with pytest.raises(NotFoundError, match="payload blob") as caught:
        store.read(absent)
    assert caught.value.key == absent
    name = store.put(b"stored, then lost")
    store.path(name).unlink()
    with pytest.raises(NotFoundError):
        store.read(name)


MALFORMED = [
    "",
    "abc",
    "0" * 64,  # no random part
    "0" * 64 + "-" + "0" * 15,  # random part too short
    "0" * 64 + "-" + "0" * 17,  # too long
    "0" * 63 + "-" + "0" * 17,  # the dash one place early
    "A" * 64 + "-" + "0" * 16,  # upper case
    "0" * 64 + "-" + "0" * 15 + "g",  # not hex
    "0" * 64 + "_" + "0" * 16,  # not a dash
    "0" * 64 + "-" + "0" * 14 + "-0",  # a second dash
    "../" + "0" * 61 + "-" + "0" * 16,  # a path, the length of a name
    "00/" + "0" * 61 + "-" + "0" * 16,
]


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_names_are_refused_before_touching_the_disk(tmp_path: Path, name: str) -> None:
    store = BlobStore(tmp_path / "blobs")
    assert not is_blob_name(name)
    for use in (store.read, store.path, store.retire):
        with pytest.raises(InvalidArgumentError, match="is not a blob name"):
            use(name)
    assert not (tmp_path / "blobs").exists()


def test_names_lists_only_published_blobs_in_their_fan_out_directory(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    assert list(store.names()) == []  # no directory yet
    name = store.put(b"the one blob")
    (store.root / "README").write_text("not a blob")
    (store.root / name[:2] / "partial.tmp").write_bytes(b"not a blob")
    misplaced = hashlib.sha256(b"x").hexdigest() + "-" + "1" * 16
    wrong_directory = "ff" if not misplaced.startswith("ff") else "00"
    (store.root / wrong_directory).mkdir()
    (store.root / wrong_directory / misplaced).write_bytes(b"x")
    (store.root / STAGING / misplaced).write_bytes(b"x")  # staged, not published
    assert list(store.names()) == [name]


# --- StagedBlob -------------------------------------------------------------------------------


@pytest.fixture
def fdatasyncs(monkeypatch: pytest.MonkeyPatch) -> tuple[list[int], threading.Event]:
    """Record the background flusher's fdatasync calls (still made for real)."""
    calls: list[int] = []
    called = threading.Event()
    real = os.fdatasync

    def recording(descriptor: int) -> None:
        real(descriptor)
        calls.append(descriptor)
        called.set()

    monkeypatch.setattr(os, "fdatasync", recording)
    return calls, called


@pytest.mark.usefixtures("umask_022")
def test_a_blob_staged_in_chunks_is_flushed_in_the_background_and_published_whole(
    tmp_path: Path, fdatasyncs: tuple[list[int], threading.Event]
) -> None:
    calls, called = fdatasyncs
    store = BlobStore(tmp_path / "blobs")
    chunk = hashlib.sha256(b"seed").digest() * (1 << 15)  # 1 MiB
    chunks = [bytes([i]) + chunk[1:] for i in range(FLUSH_EVERY_BYTES // len(chunk) + 1)]
    chunks.append(b"a short tail")
    expected = b"".join(chunks)
    assert len(expected) > FLUSH_EVERY_BYTES

    staged = store.stage()
    [staging_file] = _staging_files(store)
    assert _mode(staging_file) == 0o600
    for part in chunks:
        staged.write(part)
    # Past FLUSH_EVERY_BYTES the flusher thread writes back without being asked again.
    assert called.wait(10), "the background flusher never called fdatasync"
    assert calls
    assert staged.size == len(expected)
    assert staged.finish() == hashlib.sha256(expected).digest()

    name = staged.publish()
    assert name[:64] == hashlib.sha256(expected).hexdigest()
    assert store.read(name) == expected
    assert _mode(store.path(name)) == 0o600
    assert _staging_files(store) == []
    assert not staged._flusher.is_alive()


def test_finish_writes_back_a_small_blob_in_the_background_and_maps_it(
    tmp_path: Path, fdatasyncs: tuple[list[int], threading.Event]
) -> None:
    calls, called = fdatasyncs
    staged = BlobStore(tmp_path / "blobs").stage()
    try:
        staged.write(b"small")
        time.sleep(0.05)
        assert calls == []  # well below FLUSH_EVERY_BYTES: no write-back yet
        assert staged.finish() == hashlib.sha256(b"small").digest()
        assert called.wait(10)  # the tail, while the caller reads it back
        assert bytes(staged.contents()) == b"small"
        with pytest.raises(InvalidArgumentError, match="finished"):
            staged.write(b"more")
    finally:
        staged.discard()


def test_observers_see_every_chunk_in_order_and_their_failure_fails_the_upload(
    tmp_path: Path,
) -> None:
    store = BlobStore(tmp_path / "blobs")
    seen: list[bytes] = []
    staged = store.stage([seen.append])
    for part in (b"one", b"two", b"three"):
        staged.write(part)
    staged.finish()
    assert seen == [b"one", b"two", b"three"]
    staged.discard()

    def broken(data: bytes) -> None:
        raise ValueError("observer broke")

    failing = store.stage([broken])
    failing.write(b"x")
    with pytest.raises(ValueError, match="observer broke"):
        failing.finish()
    failing.discard()
    assert _staging_files(store) == []
    assert list(store.names()) == []


def test_a_failed_background_flush_fails_the_publish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(descriptor: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", broken)
    store = BlobStore(tmp_path / "blobs")
    staged = store.stage()
    staged.write(b"x")
    with contextlib.suppress(OSError):  # it may have failed already
        staged.finish()  # the tail's write-back starts
    staged._flusher.join(10)  # the flusher records the error and stops
    with pytest.raises(OSError, match="Input/output error"):
        staged.publish()
    staged.discard()
    assert list(store.names()) == []
    assert _staging_files(store) == []


def test_discard_removes_the_staging_file_and_may_be_repeated(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    staged = store.stage()
    staged.write(b"an upload that was refused")
    assert len(_staging_files(store)) == 1
    staged.discard()
    assert _staging_files(store) == []
    assert not staged._flusher.is_alive()
    staged.discard()  # idempotent
    assert _staging_files(store) == []
    assert list(store.names()) == []


def test_discard_after_publish_keeps_the_published_blob(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    staged = store.stage()
    staged.write(b"accepted")
    name = staged.publish()
    staged.discard()
    staged.discard()
    assert store.read(name) == b"accepted"
    assert list(store.names()) == [name]
    assert _staging_files(store) == []


def test_publishing_under_the_name_of_other_content_is_refused(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    other = store.put(b"other content")
    staged = store.stage()
    staged.write(b"this content")
    with pytest.raises(InvalidArgumentError, match="is not the name of this content"):
        staged.publish(other)
    with pytest.raises(InvalidArgumentError, match="is not the name of this content"):
        staged.publish("not a name")
    staged.discard()
    assert list(store.names()) == [other]
    assert store.read(other) == b"other content"  # not overwritten
    assert _staging_files(store) == []


def test_copy_from_keeps_the_name_and_checks_the_content(tmp_path: Path) -> None:
    source, copies = BlobStore(tmp_path / "source"), BlobStore(tmp_path / "copies")
    name = source.put(b"to be backed up")
    assert copies.copy_from(source, name) == len(b"to be backed up")
    assert copies.read(name) == b"to be backed up"
    assert _staging_files(copies) == []

    damaged = source.put(b"damaged at the source")
    source.path(damaged).write_bytes(b"damaged at the sourcE")
    with pytest.raises(InvalidArgumentError, match="does not match its SHA-256"):
        copies.copy_from(source, damaged)
    assert list(copies.names()) == [name]
    assert _staging_files(copies) == []


# --- sweep, retire, census ---------------------------------------------------------------------


def test_sweep_removes_old_unreferenced_files_and_stale_staging_only(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    referenced_old = store.put(b"referenced, old")
    unreferenced_old = store.put(b"unreferenced, old")
    unreferenced_young = store.put(b"unreferenced, young")
    for name in (referenced_old, unreferenced_old):
        _age(store.path(name))
    stale = store.root / STAGING / "left-by-a-crash"
    stale.write_bytes(b"12345")
    _age(stale)
    in_flight = store.stage()
    in_flight.write(b"arriving")
    try:
        result = store.sweep([referenced_old], grace_seconds=HOUR)
        assert result.removed == 2
        assert result.removed_bytes == len(b"unreferenced, old") + len(b"12345")
        assert result.kept_young == 2  # the young blob and the upload in flight
        assert sorted(store.names()) == sorted([referenced_old, unreferenced_young])
        assert not stale.exists()
        assert not store.path(unreferenced_old).exists()
        assert store.read(referenced_old) == b"referenced, old"
        name = in_flight.publish()  # the sweep left the upload alone
    finally:
        in_flight.discard()
    assert store.read(name) == b"arriving"


def test_sweep_of_a_store_never_written_finds_nothing(tmp_path: Path) -> None:
    result = BlobStore(tmp_path / "none").sweep([], grace_seconds=0)
    assert (result.removed, result.removed_bytes, result.kept_young) == (0, 0, 0)
    assert not (tmp_path / "none").exists()


def test_retire_restarts_the_grace_period_of_an_old_blob(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    name = store.put(b"dropped by its submission")
    path = store.path(name)
    _age(path)
    before = time.time()
    store.retire(name)
    assert path.stat().st_mtime >= before - 1
    kept = store.sweep([], grace_seconds=HOUR)
    assert (kept.removed, kept.kept_young) == (0, 1)
    assert path.exists()
    removed = store.sweep([], grace_seconds=0)
    assert (removed.removed, removed.removed_bytes) == (1, len(b"dropped by its submission"))
    assert not path.exists()


def test_retiring_a_blob_already_gone_only_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = BlobStore(tmp_path / "blobs")
    name = store.put(b"gone")
    store.path(name).unlink()
    with caplog.at_level(logging.WARNING, logger="sigshare.hub.storage"):
        store.retire(name)
    assert f"payload blob {name} was already gone" in caplog.text


def test_census_counts_missing_unreferenced_and_staged_files(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    empty = store.census([])
    assert (empty.present, empty.referenced, empty.staged) == (frozenset(), frozenset(), 0)

    kept = store.put(b"referenced and present")
    orphan = store.put(b"present, referenced by nobody")
    lost = store.put(b"referenced, deleted")
    store.path(lost).unlink()
    (store.root / STAGING / "left-by-a-crash").write_bytes(b"x")
    staged = store.stage()
    try:
        found = store.census([kept, lost])
    finally:
        staged.discard()
    assert found.referenced == {kept, lost}
    assert found.present == {kept, orphan}
    assert found.missing == {lost}
    assert found.unreferenced == {orphan}
    assert found.staged == 2
    assert store.census([kept, lost]).staged == 1  # the discarded upload left nothing


# --- the repository, on both backends ----------------------------------------------------------


@pytest.fixture
def blob_engine(database_url: str, tmp_path: Path) -> Iterator[Engine]:
    """An engine with a blob store: SQLite's default beside its file, PostgreSQL's named."""
    if database_url.startswith("sqlite"):
        engine = make_engine(database_url)
    else:
        engine = make_engine(database_url, blob_dir=tmp_path / "blobs")
    yield engine
    engine.dispose()


def _store(engine: Engine) -> BlobStore:
    store = store_for(engine)
    assert store is not None
    return store


def _payload_rows(engine: Engine) -> list[tuple[int, bytes | None, str | None]]:
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT submission_id, payload, blob FROM submission_payloads ORDER BY 1")
        )
        return [(row[0], None if row[1] is None else bytes(row[1]), row[2]) for row in rows]


def test_the_default_store_of_an_sqlite_file_is_beside_it(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    try:
        assert _store(engine).root == tmp_path / "hub.db.blobs"
        assert payloads.location(engine) == str(tmp_path / "hub.db.blobs")
    finally:
        engine.dispose()


def test_a_submission_stores_its_payload_as_a_blob(blob_engine: Engine) -> None:
    payload = bytes(range(256)) * 64 + b"\x00\x00"
    with session_scope(blob_engine) as session:
        acme = add_member(session, "acme")
        added = add_submission(session, acme, "filter-1", payload=payload)
    assert added.byte_size == len(payload)
    [(submission_id, in_column, name)] = _payload_rows(blob_engine)
    assert (submission_id, in_column) == (added.id, None)
    assert name is not None
    assert NAME.fullmatch(name)
    assert name[:64] == hashlib.sha256(payload).hexdigest()
    store = _store(blob_engine)
    assert store.path(name).read_bytes() == payload
    with session_scope(blob_engine) as session:
        submissions = SubmissionRepository(session)
        assert submissions.payload(added.id) == payload
        assert submissions.blob_names() == [name]
    found = payloads.census(blob_engine)
    assert found is not None
    assert (found.referenced, found.present, found.missing) == ({name}, {name}, frozenset())


def test_a_staged_upload_is_published_by_the_submission_that_stores_it(
    blob_engine: Engine,
) -> None:
    store = _store(blob_engine)
    staged = store.stage()
    try:
        for part in (b"received ", b"in ", b"chunks"):
            staged.write(part)
        with session_scope(blob_engine) as session:
            acme = add_member(session, "acme")
            added = SubmissionRepository(session).add(
                member_id=acme.id,
                family_kind="email",
                key_id="epoch-1",
                params_digest=hashlib.sha256(b"params").digest(),
                content_sha256=staged.finish(),
                declared_count=3,
                set_bits=None,
                payload=staged,
                created_at=T0,
                expires_at=T0.replace(year=T0.year + 1),
            )
    finally:
        staged.discard()
    assert added.byte_size == len(b"received in chunks")
    [(_, in_column, name)] = _payload_rows(blob_engine)
    assert in_column is None
    assert name is not None
    assert list(store.names()) == [name]
    assert _staging_files(store) == []
    with session_scope(blob_engine) as session:
        assert SubmissionRepository(session).payload(added.id) == b"received in chunks"


def test_postgresql_without_a_blob_directory_keeps_payloads_in_the_database(
    migrated_postgres_url: str, tmp_path: Path
) -> None:
    empty_tables(migrated_postgres_url)
    assert blob_directory(migrated_postgres_url) is None
    engine = make_engine(migrated_postgres_url)
    try:
        assert store_for(engine) is None
        with session_scope(engine) as session:
            acme = add_member(session, "acme")
            added = add_submission(session, acme, "filter-1", payload=b"in the column")
        assert _payload_rows(engine) == [(added.id, b"in the column", None)]
        with session_scope(engine) as session:
            submissions = SubmissionRepository(session)
            assert submissions.payload(added.id) == b"in the column"
            assert submissions.blob_names() == []
            submissions.end(added.id, SubmissionStatus.EXPIRED, T0)
        assert _payload_rows(engine) == []
        assert payloads.location(engine) == "database"
        assert payloads.census(engine) is None
        assert payloads.sweep(engine, 0) is None
        assert payloads.start_sweeper(engine, threading.Event()) is None
    finally:
        engine.dispose()
    assert list(tmp_path.iterdir()) == []  # no blob directory appeared anywhere it could


def test_payloads_in_the_column_and_in_blobs_are_both_read(
    database_url: str, tmp_path: Path
) -> None:
    """Rows written before the hub had a store keep their bytes in the column."""
    without = make_engine(database_url)
    blobs.attach(without, None)
    with_store = make_engine(database_url, blob_dir=tmp_path / "store")
    try:
        with session_scope(without) as session:
            acme = add_member(session, "acme")
            old = add_submission(session, acme, "old", payload=b"old, in the column")
        with session_scope(with_store) as session:
            new = add_submission(
                session, acme, "new", payload=b"new, in a blob", family_kind="phone"
            )
        with session_scope(with_store) as session:
            submissions = SubmissionRepository(session)
            assert submissions.payload(old.id) == b"old, in the column"
            assert submissions.payload(new.id) == b"new, in a blob"
            assert len(submissions.blob_names()) == 1
    finally:
        without.dispose()
        with_store.dispose()


def test_reading_a_blob_without_a_store_names_the_setting(
    database_url: str, blob_engine: Engine
) -> None:
    with session_scope(blob_engine) as session:
        acme = add_member(session, "acme")
        added = add_submission(session, acme, "filter-1")
    storeless = make_engine(database_url)
    blobs.attach(storeless, None)  # PostgreSQL's default; an SQLite file always has one
    try:
        with (
            session_scope(storeless) as session,
            pytest.raises(PreconditionError, match=blobs.BLOB_DIR_ENV) as caught,
        ):
            SubmissionRepository(session).payload(added.id)
        assert f"submission {added.id}'s payload" in str(caught.value)
    finally:
        storeless.dispose()


def test_reading_a_blob_deleted_behind_the_hub_is_not_found(blob_engine: Engine) -> None:
    with session_scope(blob_engine) as session:
        acme = add_member(session, "acme")
        added = add_submission(session, acme, "filter-1")
        [name] = SubmissionRepository(session).blob_names()
    _store(blob_engine).path(name).unlink()
    with session_scope(blob_engine) as session, pytest.raises(NotFoundError, match=name):
        SubmissionRepository(session).payload(added.id)


def test_ending_a_submission_retires_its_blob_and_the_sweep_removes_it(
    blob_engine: Engine,
) -> None:
    store = _store(blob_engine)
    with session_scope(blob_engine) as session:
        acme = add_member(session, "acme")
        ended = add_submission(session, acme, "ends", payload=b"ends")
        kept = add_submission(session, acme, "stays", payload=b"stays", family_kind="phone")
        names = dict(
            session.execute(text("SELECT submission_id, blob FROM submission_payloads")).all()
        )
    for name in names.values():
        _age(store.path(name))  # long published: only retiring makes a blob young
    before = time.time()
    with session_scope(blob_engine) as session:
        SubmissionRepository(session).end(ended.id, SubmissionStatus.EXPIRED, T0)

    assert [row[0] for row in _payload_rows(blob_engine)] == [kept.id]
    retired = store.path(names[ended.id])
    assert retired.exists()  # a dump taken just before still finds it within the grace
    assert retired.stat().st_mtime >= before - 1
    with session_scope(blob_engine) as session:
        assert SubmissionRepository(session).blob_names() == [names[kept.id]]
        with pytest.raises(NotFoundError):
            SubmissionRepository(session).payload(ended.id)

    young = payloads.sweep(blob_engine)  # the default grace: an hour
    assert young is not None
    assert (young.removed, young.kept_young) == (0, 1)
    assert retired.exists()
    swept = payloads.sweep(blob_engine, 0)
    assert swept is not None
    assert (swept.removed, swept.removed_bytes) == (1, len(b"ends"))
    assert not retired.exists()
    assert store.path(names[kept.id]).exists()  # referenced, however old
    with session_scope(blob_engine) as session:
        assert SubmissionRepository(session).payload(kept.id) == b"stays"


def test_a_rolled_back_submission_leaves_an_unreferenced_blob_for_the_sweep(
    blob_engine: Engine,
) -> None:
    with session_scope(blob_engine) as session:
        acme = add_member(session, "acme")

    def submit_then_fail() -> None:
        with session_scope(blob_engine) as session:
            add_submission(session, acme, "never committed", payload=b"never committed")
            raise RuntimeError("the transaction fails after the blob was published")

    with pytest.raises(RuntimeError):
        submit_then_fail()
    found = payloads.census(blob_engine)
    assert found is not None
    assert found.referenced == frozenset()
    [orphan] = found.unreferenced
    _age(_store(blob_engine).path(orphan))
    swept = payloads.sweep(blob_engine)
    assert swept is not None
    assert swept.removed == 1


def test_revive_stores_the_new_payload_as_a_blob(blob_engine: Engine) -> None:
    store = _store(blob_engine)
    with session_scope(blob_engine) as session:
        acme = add_member(session, "acme")
        first = add_submission(session, acme, "acme-1", payload=b"first life")
        submissions = SubmissionRepository(session)
        submissions.end(first.id, SubmissionStatus.SUPERSEDED, T0)
        [retired] = store.names()
        revived = submissions.revive(
            first.id,
            payload=b"second life",
            key_id="epoch-1",
            params_digest=hashlib.sha256(b"params").digest(),
            created_at=T0,
            expires_at=T0.replace(year=T0.year + 1),
        )
        assert revived.byte_size == len(b"second life")
        [name] = submissions.blob_names()
        assert name != retired
        assert submissions.payload(first.id) == b"second life"
    assert sorted(store.names()) == sorted([retired, name])


def test_the_sweeper_thread_sweeps_at_once_and_stops_when_asked(blob_engine: Engine) -> None:
    store = _store(blob_engine)
    orphan = store.put(b"unreferenced")
    _age(store.path(orphan))
    stop = threading.Event()
    thread = payloads.start_sweeper(blob_engine, stop, interval_seconds=HOUR, grace_seconds=HOUR)
    assert thread is not None
    try:
        deadline = time.monotonic() + 10
        while store.path(orphan).exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not store.path(orphan).exists()
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()


# --- the CLI ----------------------------------------------------------------------------------


def hub(url: str, blob_dir: Path | None, *args: str) -> Result:
    location = [] if blob_dir is None else ["--blob-dir", str(blob_dir)]
    return invoke_hub(url, *location, "db", "blobs", *args)


def _two_submissions(engine: Engine) -> list[str]:
    with session_scope(engine) as session:
        acme = add_member(session, "acme")
        add_submission(session, acme, "one", payload=b"one")
        add_submission(session, acme, "two", payload=b"two", family_kind="phone")
        return sorted(SubmissionRepository(session).blob_names())


def test_db_blobs_reports_a_missing_blob_and_fails(database_url: str, tmp_path: Path) -> None:
    blob_dir = tmp_path / "cli-blobs"
    engine = make_engine(database_url, blob_dir=blob_dir)
    try:
        lost, kept = _two_submissions(engine)
    finally:
        engine.dispose()
    healthy = hub(database_url, blob_dir, "--json")
    assert healthy.exit_code == 0, healthy.output
    assert json.loads(healthy.stdout)["missing"] == []

    BlobStore(blob_dir).path(lost).unlink()
    (blob_dir / STAGING / "left-by-a-crash").write_bytes(b"x")
    checked = hub(database_url, blob_dir, "--json")
    assert checked.exit_code == 1, checked.output
    report = json.loads(checked.stdout)
    assert report["blob_dir"] == str(blob_dir)
    assert report["missing"] == [lost]
    assert (report["referenced"], report["present"], report["unreferenced"]) == (2, 1, 0)
    assert report["staged"] == 1
    assert "swept" not in report

    text_output = hub(database_url, blob_dir)
    assert text_output.exit_code == 1
    assert "1 missing" in text_output.stdout
    assert f"missing: {lost}" in text_output.stderr
    assert kept not in text_output.stderr


def test_db_blobs_sweep_removes_unreferenced_files(database_url: str, tmp_path: Path) -> None:
    blob_dir = tmp_path / "cli-blobs"
    engine = make_engine(database_url, blob_dir=blob_dir)
    try:
        referenced = _two_submissions(engine)
    finally:
        engine.dispose()
    store = BlobStore(blob_dir)
    orphan = store.put(b"an upload that never committed")

    kept = hub(database_url, blob_dir, "--sweep", "--json")  # the default grace: an hour
    assert kept.exit_code == 0, kept.output
    assert json.loads(kept.stdout)["swept"] == {"removed": 0, "bytes": 0, "kept_young": 1}
    assert store.path(orphan).exists()

    swept = hub(database_url, blob_dir, "--sweep", "--grace", "0", "--json")
    assert swept.exit_code == 0, swept.output
    report = json.loads(swept.stdout)
    assert report["swept"] == {
        "removed": 1,
        "bytes": len(b"an upload that never committed"),
        "kept_young": 0,
    }
    assert (report["present"], report["unreferenced"], report["missing"]) == (2, 0, [])
    assert not store.path(orphan).exists()
    assert sorted(store.names()) == referenced

    refused = hub(database_url, blob_dir, "--sweep", "--grace", "-1")
    assert refused.exit_code == 2  # click's usage error: nothing swept
    assert sorted(store.names()) == referenced


def test_db_blobs_on_postgresql_without_a_store_says_so(migrated_postgres_url: str) -> None:
    checked = hub(migrated_postgres_url, None, "--json")
    assert checked.exit_code == 0, checked.output
    assert json.loads(checked.stdout)["blob_dir"] is None
    assert "kept in the database" in hub(migrated_postgres_url, None).stdout


def test_the_blob_dir_option_reads_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database_url = f"sqlite:///{tmp_path / 'hub.db'}"
    assert CliRunner().invoke(cli, ["--db", database_url, "db", "upgrade"]).exit_code == 0
    checked = hub(database_url, None, "--json")
    assert json.loads(checked.stdout)["blob_dir"] == f"{tmp_path / 'hub.db'}.blobs"
    from_environment = tmp_path / "from-env"
    monkeypatch.setenv(blobs.BLOB_DIR_ENV, str(from_environment))
    checked = hub(database_url, None, "--json")
    assert checked.exit_code == 0, checked.output
    assert json.loads(checked.stdout)["blob_dir"] == str(from_environment)
    given = tmp_path / "given"
    checked = hub(database_url, given, "--json")
    assert json.loads(checked.stdout)["blob_dir"] == str(given)


def test_db_backup_copies_only_the_referenced_blobs(tmp_path: Path) -> None:
    database = tmp_path / "hub.db"
    url = f"sqlite:///{database}"
    assert CliRunner().invoke(cli, ["--db", url, "db", "upgrade"]).exit_code == 0
    engine = make_engine(url)
    try:
        referenced = _two_submissions(engine)
        orphan = _store(engine).put(b"unreferenced")
    finally:
        engine.dispose()
    out = tmp_path / "backup.db"
    made = CliRunner().invoke(cli, ["--db", url, "db", "backup", "--out", str(out), "--json"])
    assert made.exit_code == 0, made.output
    report = json.loads(made.stdout)
    assert report["blob_dir"] == f"{out}.blobs"
    assert (report["blobs"], report["blob_bytes"]) == (2, len(b"one") + len(b"two"))
    copies = BlobStore(Path(f"{out}.blobs"))
    assert sorted(copies.names()) == referenced
    assert orphan not in set(copies.names())
    assert copies.read(referenced[0]) in {b"one", b"two"}
    restored = hub(f"sqlite:///{out}", None, "--json")  # the copy finds its blobs beside it
    assert restored.exit_code == 0, restored.output
    assert json.loads(restored.stdout)["missing"] == []


def test_a_backup_that_fails_on_a_missing_blob_leaves_nothing_behind(tmp_path: Path) -> None:
    database = tmp_path / "hub.db"
    url = f"sqlite:///{database}"
    assert CliRunner().invoke(cli, ["--db", url, "db", "upgrade"]).exit_code == 0
    engine = make_engine(url)
    try:
        lost, _ = _two_submissions(engine)
        _store(engine).path(lost).unlink()
    finally:
        engine.dispose()
    out = tmp_path / "backup.db"
    failed = CliRunner().invoke(cli, ["--db", url, "db", "backup", "--out", str(out)])
    assert failed.exit_code != 0
    assert "not found" in failed.stderr
    # Like the other refused backups (test_backup_restore): nothing that looks like a backup.
    assert not out.exists()
    assert not Path(f"{out}.blobs").exists()


# --- where the store is: make_engine and $SIGSHARE_HUB_BLOB_DIR ---------------------------------


def test_the_environment_names_the_store_unless_a_directory_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sqlite_url = f"sqlite:///{tmp_path / 'hub.db'}"
    postgres_url = "postgresql://root@127.0.0.1:5432/test"
    assert blob_directory(sqlite_url) == tmp_path / "hub.db.blobs"
    assert blob_directory(postgres_url) is None

    shared = tmp_path / "shared"
    monkeypatch.setenv(blobs.BLOB_DIR_ENV, str(shared))
    explicit = tmp_path / "explicit"
    for url in (sqlite_url, postgres_url):
        assert blob_directory(url) == shared
        assert blob_directory(url, explicit) == explicit
        engine = make_engine(url)
        assert _store(engine).root == shared
        engine.dispose()
        engine = make_engine(url, blob_dir=explicit)
        assert _store(engine).root == explicit
        engine.dispose()
    assert not shared.exists()  # created on the first write, not by make_engine
    assert not explicit.exists()

    monkeypatch.setenv(blobs.BLOB_DIR_ENV, "")  # empty: as if unset
    assert blob_directory(sqlite_url) == tmp_path / "hub.db.blobs"
    assert blob_directory(postgres_url) is None


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_an_in_memory_sqlite_database_keeps_payloads_in_the_database(url: str) -> None:
    assert blob_directory(url) is None
    engine = make_engine(url)
    try:
        assert store_for(engine) is None
        assert payloads.location(engine) == "database"
    finally:
        engine.dispose()


# --- over gRPC: what the transport stages ----------------------------------------------------


def test_a_refused_upload_leaves_nothing_and_an_accepted_one_exactly_its_blob(
    blob_engine: Engine,
) -> None:
    """The hub stages a filter as it arrives; one its checks refuse (here: a declared count the
    bits do not bear out) leaves neither a blob nor a staging file; an accepted one, its blob,
    byte for byte the filter sent."""
    credentials = provision(blob_engine, members=["m1"])
    forum = email_forum()
    store = _store(blob_engine)
    with running_hub(blob_engine, credentials) as running:
        client = running.client("m1")
        published = client.get_parameters().bloom["email"]
        bloom = forum.bloom("m1")
        payload = encode_bloom(bloom)
        inflated = forum.bloom("m1")
        inflated.count *= 20  # a budget twenty times what the bits hold
        with pytest.raises(HubRejectedError, match="fewer bits set"):
            client.submit(
                sketch_format="bloom",
                kind="email",
                key_id=published.key_id,
                params_digest=published.digest,
                declared_count=inflated.count,
                payload=encode_bloom(inflated),
            )
        assert list(store.names()) == []
        assert _staging_files(store) == []
        assert not submit_email(client, forum, "m1").duplicate
    (name,) = store.names()
    assert store.read(name) == payload
    assert _staging_files(store) == []
    with session_scope(blob_engine) as session:
        assert SubmissionRepository(session).blob_names() == [name]
