"""Engines and sessions for the two supported backends: an SQLite file and PostgreSQL.

SQLite is the embedded default (scale path 1: one hub process). Its engine is set up so that the
repositories' concurrency rules hold without further thought:

- ``foreign_keys=ON`` (off by default in SQLite);
- WAL journal, so readers never block the writer or each other;
- every transaction starts with ``BEGIN IMMEDIATE``: it takes the database's write lock up front,
  so two writers queue on the busy timeout (30 s) instead of both reading the same state and one
  failing with "database is locked" when it tries to write — the audit chain relies on this. The
  pysqlite driver's own transaction handling is switched off for this (SQLAlchemy's documented
  recipe), which also makes SAVEPOINT and transactional DDL behave.

The SQLite file holds credential hashes, session tokens and the audit log, so it is private to
the hub's user: the hub creates it 0600 (and any missing directory above it 0700) before SQLite
opens it; SQLite gives its ``-wal`` and ``-shm`` files the database file's mode. An existing file
that group or others may read or write is used, with a warning, and ``db upgrade`` narrows it
(see :func:`restrict_sqlite_files`).

PostgreSQL (scale path 2: several hub replicas) gets ``pool_pre_ping`` so replicas survive
database restarts; cross-process writers are serialised by advisory locks in the repositories.
``postgresql://`` and ``postgres://`` URLs name the driver the hub ships, psycopg2.

Submission payloads live in a blob directory (:mod:`.blobs`) attached to the engine: the one
given, else ``$SIGSHARE_HUB_BLOB_DIR``, else for an SQLite file ``<file>.blobs`` beside it.
PostgreSQL without a configured directory (and in-memory SQLite) keeps payloads in the
database: replicas on several hosts need a directory they all mount, which only the operator
can name.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from sigshare.hub.errors import InvalidArgumentError
from sigshare.hub.storage import blobs
from sigshare.hub.storage.files import (
    PRIVATE_FILE_MODE,
    make_private_directories,
)

DATABASE_URL_ENV = "SIGSHARE_HUB_DB"
DEFAULT_SQLITE_FILE = "sigshare-hub.db"
SQLITE_BUSY_TIMEOUT_MS = 30_000
SUPPORTED_BACKENDS = ("sqlite", "postgresql")
POSTGRES_DRIVER = "postgresql+psycopg2"
_POSTGRES_ALIASES = ("postgresql", "postgres")
"""Driverless spellings of a PostgreSQL URL (SQLAlchemy would pick psycopg 3, not shipped)."""
SQLITE_COMPANION_SUFFIXES = ("-wal", "-shm", "-journal")
_IN_MEMORY = ("", ":memory:")

log = logging.getLogger("sigshare.hub.storage")


def default_database_url() -> str:
    """``$SIGSHARE_HUB_DB`` if set, else ``sigshare-hub.db`` in the current directory."""
    configured = os.environ.get(DATABASE_URL_ENV)
    if configured:
        return configured
    return f"sqlite:///{Path.cwd().resolve() / DEFAULT_SQLITE_FILE}"


def normalize_url(url: str | URL) -> URL:
    """``url`` parsed, with ``postgresql://`` and ``postgres://`` bound to psycopg2."""
    parsed = make_url(url)
    if parsed.drivername in _POSTGRES_ALIASES:
        return parsed.set(drivername=POSTGRES_DRIVER)
    return parsed


def sqlite_path(url: str | URL) -> Path | None:
    """The file of an SQLite URL; ``None`` for other backends, memory and ``file:`` URIs."""
    parsed = make_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in _IN_MEMORY:
        return None
    if database.startswith("file:") or parsed.query.get("uri"):
        return None  # SQLite parses these itself; the hub never writes them
    return Path(database)


def loose_sqlite_files(path: Path) -> list[tuple[Path, int]]:
    """The database file and its companions that group or others may access, with their modes."""
    loose = []
    for candidate in (path, *(Path(f"{path}{suffix}") for suffix in SQLITE_COMPANION_SUFFIXES)):
        try:
            mode = stat.S_IMODE(candidate.stat().st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o077:
            loose.append((candidate, mode))
    return loose


def restrict_sqlite_files(path: Path) -> list[tuple[Path, int]]:
    """Narrow the database file and its companions to 0600; those changed, with former modes."""
    loose = loose_sqlite_files(path)
    for candidate, _ in loose:
        candidate.chmod(PRIVATE_FILE_MODE)
    return loose


def make_engine(url: str | URL, *, blob_dir: Path | None = None) -> Engine:
    """An engine for ``url``, configured for the backend, with its payload store (see the
    module docstring)."""
    parsed = normalize_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        engine = create_engine(parsed)
        path = sqlite_path(parsed)
        if path is not None:
            _warn_if_loose(path)
            event.listen(engine, "do_connect", _private_file_creator(path))
        event.listen(engine, "connect", _configure_sqlite_connection)
        event.listen(engine, "begin", _begin_immediate)
    elif backend == "postgresql":
        engine = create_engine(parsed, pool_pre_ping=True)
    else:
        raise InvalidArgumentError(
            f"unsupported database backend {backend!r}: use one of {', '.join(SUPPORTED_BACKENDS)}"
        )
    directory = blob_directory(parsed, blob_dir)
    blobs.attach(engine, None if directory is None else blobs.BlobStore(directory))
    return engine


def blob_directory(url: str | URL, configured: Path | None = None) -> Path | None:
    """Where the payloads of the hub at ``url`` live: ``configured``, else
    ``$SIGSHARE_HUB_BLOB_DIR``, else ``<file>.blobs`` for an SQLite file; ``None``: in the
    database."""
    if configured is not None:
        return configured
    from_environment = os.environ.get(blobs.BLOB_DIR_ENV)
    if from_environment:
        return Path(from_environment)
    path = sqlite_path(url)
    if path is None:
        return None
    return blobs.beside(path)


def database_reachable(engine: Engine) -> bool:
    """Whether the database answers a read of its schema-version row (for health checks).

    On the driver's connection, outside any transaction: through SQLAlchemy, SQLite would begin
    with ``BEGIN IMMEDIATE`` and queue the probe behind writers for the busy timeout.
    """
    dbapi_error = engine.dialect.loaded_dbapi.Error
    try:
        connection = engine.raw_connection()
    except (SQLAlchemyError, dbapi_error) as error:
        log.warning("health check: cannot connect to the database (%s)", type(error).__name__)
        return False
    try:
        cursor = connection.cursor()
        try:
            cursor.execute("SELECT 1 FROM alembic_version")
            cursor.fetchall()
        finally:
            cursor.close()
    except dbapi_error as error:
        log.warning("health check: the database does not answer (%s)", type(error).__name__)
        return False
    finally:
        connection.close()  # back to the pool, which rolls back
    return True


def _warn_if_loose(path: Path) -> None:
    for loose, mode in loose_sqlite_files(path):
        log.warning(
            "the hub database file %s is accessible to group or others (mode %04o): run "
            "`sigshare-hub db upgrade` or `chmod 600 %s`",
            loose,
            mode,
            loose,
        )


def _private_file_creator(path: Path) -> Callable[[Any, Any, Any, Any], None]:
    """A ``do_connect`` hook creating the database file 0600 before SQLite would create it 0644
    (less the umask); missing directories above it are created 0700."""

    def create(dialect: Any, connection_record: Any, cargs: Any, cparams: Any) -> None:
        if path.exists():
            return
        make_private_directories(path.parent)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
        except FileExistsError:  # another connection or process created it first
            return
        try:
            os.fchmod(descriptor, PRIVATE_FILE_MODE)  # exact, whatever the umask
        finally:
            os.close(descriptor)

    return create


def _configure_sqlite_connection(dbapi_connection: Any, connection_record: Any) -> None:
    # Take transaction control away from pysqlite; _begin_immediate emits BEGIN instead.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
    finally:
        cursor.close()


def _begin_immediate(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One unit of work: commit if the block succeeds, roll back if it raises, always close."""
    session = Session(engine)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
