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

PostgreSQL (scale path 2: several hub replicas) gets ``pool_pre_ping`` so replicas survive
database restarts; cross-process writers are serialised by advisory locks in the repositories.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.orm import Session

from sigshare.hub.errors import InvalidArgumentError

DATABASE_URL_ENV = "SIGSHARE_HUB_DB"
DEFAULT_SQLITE_FILE = "sigshare-hub.db"
SQLITE_BUSY_TIMEOUT_MS = 30_000
SUPPORTED_BACKENDS = ("sqlite", "postgresql")


def default_database_url() -> str:
    """``$SIGSHARE_HUB_DB`` if set, else ``sigshare-hub.db`` in the current directory."""
    configured = os.environ.get(DATABASE_URL_ENV)
    if configured:
        return configured
    return f"sqlite:///{Path.cwd().resolve() / DEFAULT_SQLITE_FILE}"


def make_engine(url: str | URL) -> Engine:
    """An engine for ``url``, configured for the backend (see the module docstring)."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        engine = create_engine(parsed)
        event.listen(engine, "connect", _configure_sqlite_connection)
        event.listen(engine, "begin", _begin_immediate)
        return engine
    if backend == "postgresql":
        return create_engine(parsed, pool_pre_ping=True)
    raise InvalidArgumentError(
        f"unsupported database backend {backend!r}: use one of {', '.join(SUPPORTED_BACKENDS)}"
    )


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
