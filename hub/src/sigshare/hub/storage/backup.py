"""Online backup of an SQLite hub database through SQLite's backup API.

The copy is a consistent snapshot taken while hubs keep serving: SQLite copies every page in
one step under a read transaction, so writers in WAL mode are not blocked and the snapshot
includes what the WAL holds. The target is a new file created ``0600`` (the database holds
credential hashes, tokens and the audit log); an existing file is never overwritten.
PostgreSQL is backed up with ``pg_dump`` (docs/operator-guide.md, "Backups and restores").
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from sigshare.hub.errors import AlreadyExistsError, InvalidArgumentError
from sigshare.hub.storage.database import PRIVATE_FILE_MODE


@dataclass(frozen=True, slots=True)
class SqliteBackup:
    path: Path
    size: int
    """Bytes written."""
    revision: str | None
    """The schema revision the copy is at (``None`` for a database never migrated)."""


def backup_sqlite(source: Path, target: Path) -> SqliteBackup:
    """Copy the database at ``source`` to the new file ``target`` and check the copy.

    Raises :class:`AlreadyExistsError` if ``target`` exists and :class:`InvalidArgumentError`
    if the copy fails SQLite's integrity check (the partial file is removed).
    """
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
    except sqlite3.Error as error:
        target.unlink(missing_ok=True)
        raise InvalidArgumentError(f"{source}: cannot back up ({error})") from None
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return SqliteBackup(path=target, size=target.stat().st_size, revision=revision)


def _revision(connection: sqlite3.Connection) -> str | None:
    try:
        row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.OperationalError:  # no such table: never migrated
        return None
    return None if row is None else str(row[0])
