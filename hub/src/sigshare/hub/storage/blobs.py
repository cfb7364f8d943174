"""Submission payloads as files: a directory of immutable blobs named by their SHA-256.

Members' sketches are large (a Bloom filter at published capacity is tens to hundreds of MiB)
and written once, read by the builders of aggregates, and dropped when the submission ends.
Kept as files they are written at disk speed while the stream arrives, and the database holds
only a reference; in the database they would pass through the driver's text encoding
(psycopg2) or the page cache twice (SQLite's WAL). See docs/decisions/0007-payload-blobs.md.

Layout under the store's root (created 0700, files 0600)::

    staging/              uploads being received; never referenced, removed by the sweep
    ab/abcdef…-1f2e…      published blobs: <sha256 hex>-<16 random hex>, fanned out by 2 hex

A blob is *staged* (written into ``staging/`` while it arrives, flushed to disk in the
background), then *published* (made durable, renamed into place, directory synced) before the
transaction that references it commits. So a committed reference always has its file, whatever
crashes: a crash before the commit leaves an unreferenced file, which nobody can see (no row
names it) and the sweep removes. Names carry a random part, so no two uploads share a file and
a name is never referenced again once its row is gone: deleting needs no reference counting
across replicas.

Files are never deleted when their row is: a submission that ends touches its file (its mtime
becomes the time it became garbage), and :meth:`BlobStore.sweep` removes unreferenced files
older than a grace period (one hour by default). A ``pg_dump`` followed within that hour by a
copy of the directory therefore holds every blob the dump references. Reading checks the
SHA-256 in the name, so a damaged or swapped file is an error, never a wrong answer.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import mmap
import os
import queue
import secrets
import stat
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, Engine

from sigshare.hub.errors import InvalidArgumentError, NotFoundError
from sigshare.hub.storage.files import (
    PRIVATE_DIRECTORY_MODE,
    PRIVATE_FILE_MODE,
    make_private_directories,
)

BLOB_DIR_ENV = "SIGSHARE_HUB_BLOB_DIR"
SQLITE_BLOB_SUFFIX = ".blobs"
"""The default store of an SQLite hub: ``<database file>.blobs`` beside it."""


def beside(database_file: Path) -> Path:
    """The blob directory of the SQLite database ``database_file`` (and of a backup of it)."""
    return database_file.with_name(database_file.name + SQLITE_BLOB_SUFFIX)


STAGING = "staging"
DEFAULT_GRACE_SECONDS = 3600.0
FLUSH_EVERY_BYTES = 8 << 20
"""A staged blob starts writing back to disk after every this many bytes received, so that
publishing waits only for the tail."""
NAME_LENGTH = 64 + 1 + 16

log = logging.getLogger("sigshare.hub.storage")

_STORES: weakref.WeakKeyDictionary[Engine, BlobStore] = weakref.WeakKeyDictionary()


def attach(engine: Engine, store: BlobStore | None) -> None:
    """Make ``store`` the payload store of every session on ``engine`` (``None``: payloads
    in the database)."""
    if store is None:
        _STORES.pop(engine, None)
    else:
        _STORES[engine] = store


def store_for(bind: Engine | Connection) -> BlobStore | None:
    """The payload store attached to the engine of ``bind``, if any."""
    return _STORES.get(bind if isinstance(bind, Engine) else bind.engine)


def is_blob_name(name: str) -> bool:
    digest, _, suffix = name.partition("-")
    return (
        len(name) == NAME_LENGTH
        and len(digest) == 64
        and all(c in "0123456789abcdef" for c in digest + suffix)
    )


@dataclass(frozen=True, slots=True)
class BlobCensus:
    """What :meth:`BlobStore.census` found, by name."""

    referenced: frozenset[str]
    present: frozenset[str]
    staged: int
    """Files in ``staging/``: uploads in flight, or left by a crash."""

    @property
    def missing(self) -> frozenset[str]:
        """Referenced by a row but absent: must be empty."""
        return self.referenced - self.present

    @property
    def unreferenced(self) -> frozenset[str]:
        """Present but referenced by no row: ended submissions and uploads that never committed."""
        return self.present - self.referenced


@dataclass(frozen=True, slots=True)
class SweepResult:
    removed: int
    removed_bytes: int
    kept_young: int
    """Unreferenced files younger than the grace period, left for a later sweep."""


class BlobStore:
    """A directory of payload blobs (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._ready = False

    def _prepare(self) -> None:
        """Create the root and staging directories on first write (0700)."""
        if not self._ready:
            _make_private_directory(self.root)
            _make_private_directory(self.root / STAGING)
            self._ready = True

    def stage(self, observers: Sequence[Callable[[bytes], None]] = ()) -> StagedBlob:
        """A new, empty staged blob to write an arriving payload into; each of ``observers``
        sees every chunk, in order, on a thread of its own (work that overlaps the receiving)."""
        self._prepare()
        path = self.root / STAGING / secrets.token_hex(16)
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
        return StagedBlob(self, path, descriptor, observers)

    def put(self, payload: bytes) -> str:
        """Write ``payload`` as a new published blob; its name."""
        staged = self.stage()
        try:
            staged.write(payload)
            return staged.publish()
        except BaseException:
            staged.discard()
            raise

    def copy_from(self, other: BlobStore, name: str) -> int:
        """Copy blob ``name`` of ``other`` into this store under the same name (checked
        against its hash); the bytes copied."""
        data = other.read(name)
        staged = self.stage()
        try:
            staged.write(data)
            staged.publish(name)
        finally:
            staged.discard()
        return len(data)

    def path(self, name: str) -> Path:
        if not is_blob_name(name):
            raise InvalidArgumentError(f"{name!r} is not a blob name")
        return self.root / name[:2] / name

    def read(self, name: str) -> bytes:
        """The blob's bytes, checked against the SHA-256 its name carries."""
        try:
            data = self.path(name).read_bytes()
        except FileNotFoundError:
            raise NotFoundError("payload blob", name) from None
        if not hmac.compare_digest(hashlib.sha256(data).hexdigest(), name[:64]):
            raise InvalidArgumentError(
                f"payload blob {name} does not match its SHA-256: the file was damaged or "
                "replaced; restore it from a backup"
            )
        return data

    def retire(self, name: str) -> None:
        """Mark a blob whose reference was dropped: the sweep's grace period starts now."""
        try:
            os.utime(self.path(name))
        except FileNotFoundError:
            log.warning("payload blob %s was already gone when its submission ended", name)

    def names(self) -> Iterator[str]:
        """Every published blob's name."""
        if not self.root.is_dir():
            return
        for directory in self.root.iterdir():
            if len(directory.name) != 2 or not directory.is_dir():
                continue
            for entry in directory.iterdir():
                if is_blob_name(entry.name) and entry.name.startswith(directory.name):
                    yield entry.name

    def census(self, referenced: Iterable[str]) -> BlobCensus:
        staging = self.root / STAGING
        staged = sum(1 for _ in staging.iterdir()) if staging.is_dir() else 0
        return BlobCensus(
            referenced=frozenset(referenced), present=frozenset(self.names()), staged=staged
        )

    def sweep(self, referenced: Iterable[str], *, grace_seconds: float) -> SweepResult:
        """Remove unreferenced blobs and staged files untouched for ``grace_seconds``.

        ``referenced`` must be read from the database *before* this call: a blob published
        since has a fresh mtime and is kept.
        """
        keep = frozenset(referenced)
        cutoff = time.time() - grace_seconds
        removed = removed_bytes = young = 0
        candidates = [self.path(name) for name in self.names() if name not in keep]
        if (self.root / STAGING).is_dir():
            candidates += list((self.root / STAGING).iterdir())
        for path in candidates:
            try:
                info = path.stat()
            except FileNotFoundError:
                continue  # another replica's sweep removed it
            if info.st_mtime > cutoff:
                young += 1
                continue
            path.unlink(missing_ok=True)
            removed += 1
            removed_bytes += info.st_size
        return SweepResult(removed=removed, removed_bytes=removed_bytes, kept_young=young)


class StagedBlob:
    """A payload being written into the store's staging area, off the receiving thread.

    :meth:`write` hands each chunk to a writer thread (the page cache), a hashing thread and a
    thread per observer; a flusher thread asks the kernel to write back every
    :data:`FLUSH_EVERY_BYTES` (``fdatasync``), so the disk works while the network does and
    :meth:`publish` mostly finds the data on disk already. :meth:`finish` waits for the writer,
    the hasher and the observers; :meth:`contents` then maps the file for reading (no second
    copy in memory) while the flusher writes back the tail.
    """

    def __init__(
        self,
        store: BlobStore,
        path: Path,
        descriptor: int,
        observers: Sequence[Callable[[bytes], None]] = (),
    ) -> None:
        self._store = store
        self._path = path
        self._descriptor = descriptor
        self._digest = hashlib.sha256()
        self.size = 0
        self._finished = False
        self._written = threading.Event()
        self._flush_wanted = threading.Event()
        self._stopping = False
        self._error: Exception | None = None
        self._mapped: mmap.mmap | None = None
        self._unflushed = 0
        # Each consumer sees every chunk, in order, on its own thread: writing, hashing and
        # counting release the GIL for most of their work, so they overlap one another.
        consumers = [self._write_chunk, self._digest.update, *observers]
        self._queues: list[queue.SimpleQueue[bytes | None]] = [
            queue.SimpleQueue() for _ in consumers
        ]
        self._consumers = [
            threading.Thread(
                target=self._consume, args=(chunks, consume), name="blob-stage", daemon=True
            )
            for chunks, consume in zip(self._queues, consumers, strict=True)
        ]
        self._flusher = threading.Thread(target=self._flush_loop, name="blob-flush", daemon=True)
        for thread in [*self._consumers, self._flusher]:
            thread.start()

    def write(self, data: bytes) -> None:
        """Queue ``data`` to be written (and hashed, and observed) after what came before."""
        if self._finished:
            raise InvalidArgumentError("the staged blob was finished: nothing more may be written")
        if self._error is not None:
            raise self._error
        self.size += len(data)
        for chunks in self._queues:
            chunks.put(data)

    def _end_of_data(self) -> None:
        if not self._finished:
            self._finished = True
            for chunks in self._queues:
                chunks.put(None)

    def _write_chunk(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._descriptor, view) :]
        self._unflushed += len(data)
        if self._unflushed >= FLUSH_EVERY_BYTES:
            self._unflushed = 0
            self._flush_wanted.set()

    def _consume(
        self, chunks: queue.SimpleQueue[bytes | None], consume: Callable[[bytes], None]
    ) -> None:
        try:
            while (data := chunks.get()) is not None:
                if self._error is None:  # else drain: the upload fails at finish()
                    consume(data)
        except Exception as error:  # reported by finish(), on the caller's thread
            self._error = error
            while chunks.get() is not None:
                pass
        finally:
            if consume == self._write_chunk:
                self._written.set()
                self._flush_wanted.set()  # the tail

    def _flush_loop(self) -> None:
        while True:
            self._flush_wanted.wait()
            self._flush_wanted.clear()
            if self._stopping:
                return
            try:
                os.fdatasync(self._descriptor)
            except OSError as error:
                self._error = error
                return
            if self._written.is_set() and not self._flush_wanted.is_set():
                return  # everything written has been written back

    def finish(self) -> bytes:
        """Wait until every chunk is written and hashed; the SHA-256 of them all. The tail's
        write-back continues in the background."""
        self._end_of_data()
        for thread in self._consumers:
            thread.join()
        if self._error is not None:
            raise self._error
        return self._digest.digest()

    def contents(self) -> memoryview:
        """What was written, read-only, mapped from the page cache (after :meth:`finish`)."""
        self.finish()
        if self.size == 0:
            return memoryview(b"")
        if self._mapped is None:
            self._mapped = mmap.mmap(
                self._descriptor,
                self.size,
                flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0),
                prot=mmap.PROT_READ,
            )
        return memoryview(self._mapped)

    def _stop(self) -> None:
        """Stop every thread; the flusher's last ``fdatasync`` is waited for."""
        self._end_of_data()
        for thread in [*self._consumers, self._flusher]:
            thread.join()

    def _unmap(self) -> None:
        if self._mapped is not None:
            # A view of it still referenced: the map closes when the last one goes.
            with contextlib.suppress(BufferError):
                self._mapped.close()
            self._mapped = None

    def publish(self, name: str | None = None) -> str:
        """Make the blob durable and visible under its name, which is returned: a new one,
        or ``name`` (a copy of another store's blob, which must carry this content's hash)."""
        digest = self.finish().hex()
        self._flusher.join()  # everything written back
        if self._error is not None:
            raise self._error
        if name is None:
            name = f"{digest}-{secrets.token_hex(8)}"
        elif not is_blob_name(name) or name[:64] != digest:
            raise InvalidArgumentError(f"{name!r} is not the name of this content")
        os.fsync(self._descriptor)  # metadata too; the data was written back by the flusher
        self._unmap()
        os.close(self._descriptor)
        self._descriptor = -1
        target = self._store.path(name)
        try:
            target.parent.mkdir(mode=PRIVATE_DIRECTORY_MODE)
        except FileExistsError:
            pass
        else:
            target.parent.chmod(PRIVATE_DIRECTORY_MODE)
            _sync_directory(target.parent.parent)
        os.rename(self._path, target)
        os.utime(target)  # the sweep's grace counts from publication
        _sync_directory(target.parent)
        return name

    def discard(self) -> None:
        """Drop what was written (a refused or broken upload); safe to call twice, and after
        :meth:`publish` (which it leaves alone)."""
        self._stopping = True
        self._flush_wanted.set()
        self._stop()
        self._unmap()
        if self._descriptor >= 0:
            os.close(self._descriptor)
            self._descriptor = -1
        self._path.unlink(missing_ok=True)


def _make_private_directory(directory: Path) -> None:
    """``directory`` (and any missing parent) created ``0700``; an existing one that group or
    others may access is used with a warning."""
    if not directory.exists():
        created = make_private_directories(directory)
        if created:
            _sync_directory(created[0].parent)
        return
    if not directory.is_dir():
        raise InvalidArgumentError(f"{directory} exists and is not a directory")
    mode = stat.S_IMODE(directory.stat().st_mode)
    if mode & 0o077:
        log.warning(
            "the payload directory %s is accessible to group or others (mode %04o)",
            directory,
            mode,
        )


def _sync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
