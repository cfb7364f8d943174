"""Online backup of an SQLite hub database through SQLite's backup API.

The copy is a consistent snapshot taken while hubs keep serving: SQLite copies every page in
one step under a read transaction, so writers in WAL mode are not blocked and the snapshot
includes what the WAL holds. The target is a new file created ``0600`` (the database holds
credential hashes, tokens and the audit log); an existing file is never overwritten.
PostgreSQL is backed up with ``pg_dump`` (docs/operator-guide.md, "Backups and restores").

A hub with a blob store (:mod:`.blobs`) gets the blobs the snapshot references copied, each
checked against its hash, into ``<backup>.blobs`` — the directory the hub looks for beside a
database file of that name. Blobs are deleted only an hour after their submission ends, so
every blob the snapshot references is still there to copy.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path

from sigshare.hub.errors import AlreadyExistsError, InvalidArgumentError
from sigshare.hub.storage.blobs import BlobStore, beside
from sigshare.hub.storage.files import PRIVATE_FILE_MODE


@dataclass(frozen=True, slots=True)
class SqliteBackup:
    path: Path
    size: int
    """Bytes written."""
    revision: str | None
    """The schema revision the copy is at (``None`` for a database never migrated)."""
    blob_dir: Path | None = None
    """Where the referenced payload blobs were copied (``None``: the hub has no blob store)."""
    blobs: int = 0
    blob_bytes: int = 0


def backup_sqlite(source: Path, target: Path, store: BlobStore | None = None) -> SqliteBackup:
    """Copy the database at ``source`` to the new file ``target`` and check the copy; with
    the hub's blob ``store``, copy the blobs the copy references beside it.

    Raises :class:`AlreadyExistsError` if ``target`` (or its blob directory) exists and
    :class:`InvalidArgumentError` if the copy fails SQLite's integrity check (the partial file
    is removed).
    """
    blob_dir = beside(target)
    if store is not None and blob_dir.exists():
        raise AlreadyExistsError(f"{blob_dir} already exists: choose a new backup file")
    try:
        descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        raise AlreadyExistsError(f"{target} already exists: choose a new backup file") from None
    except OSError as error:
        raise InvalidArgumentError(f"{target}: cannot create ({error.strerror})") from None
    try:
        os.fchmod(descriptor, PRIVATE_FILE_MODE)  # exact, whatever the umask
    finally:
        os.close(descriptor)
    try:
        # mode=ro: the source is read only; a missing file is an error, never created.
        with (
            closing(sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True)) as src,
            closing(sqlite3.connect(target)) as copy,
        ):
            src.backup(copy)
            (check,) = copy.execute("PRAGMA integrity_check").fetchone()
            if check != "ok":
                raise InvalidArgumentError(f"the copy of {source} fails its integrity check")
            revision = _revision(copy)
            names = _blob_names(copy)
    except sqlite3.Error as error:
        target.unlink(missing_ok=True)
        raise InvalidArgumentError(f"{source}: cannot back up ({error})") from None
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    made = SqliteBackup(path=target, size=target.stat().st_size, revision=revision)
    if store is None:
        return made
    copies = BlobStore(blob_dir)
    copied = 0
    try:
        for name in names:
            copied += copies.copy_from(store, name)
    except BaseException:  # a missing or damaged blob: no partial backup is left behind
        shutil.rmtree(blob_dir, ignore_errors=True)
        target.unlink(missing_ok=True)
        raise
    return replace(made, blob_dir=blob_dir, blobs=len(names), blob_bytes=copied)


def _blob_names(connection: sqlite3.Connection) -> list[str]:
    try:
        rows = connection.execute(
            "SELECT blob FROM submission_payloads WHERE blob IS NOT NULL"
        ).fetchall()
    except sqlite3.OperationalError:  # before schema 0007 (or never migrated): none
        return []
    return [str(name) for (name,) in rows]


def _revision(connection: sqlite3.Connection) -> str | None:
    try:
        row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.OperationalError:  # no such table: never migrated
        return None
    return None if row is None else str(row[0])
