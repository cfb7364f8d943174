"""Databases for the hub tests: every storage test runs on SQLite and on PostgreSQL.

PostgreSQL is required, not optional: if it cannot be reached the PostgreSQL tests fail with the
reason. ``SIGSHARE_SKIP_POSTGRES=1`` skips them instead, for local runs without a server.
The server comes from ``SIGSHARE_TEST_PG_URL`` (default: ``root`` on 127.0.0.1:5432, database
``test``); each pytest process creates its own uniquely named databases there and drops them
afterwards, so xdist workers never share one.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from sigshare.hub.storage import make_engine, migrate
from sigshare.hub.storage.models import metadata

PG_URL_ENV = "SIGSHARE_TEST_PG_URL"
PG_SKIP_ENV = "SIGSHARE_SKIP_POSTGRES"
DEFAULT_PG_URL = "postgresql+psycopg2://root@127.0.0.1:5432/test"
BACKENDS = ["sqlite", "postgresql"]


def _url_string(url: URL) -> str:
    return url.render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_server() -> URL:
    """The PostgreSQL server to create test databases on; fails the test if unreachable."""
    if os.environ.get(PG_SKIP_ENV) == "1":
        pytest.skip(f"{PG_SKIP_ENV}=1: PostgreSQL tests skipped")
    url = make_url(os.environ.get(PG_URL_ENV, DEFAULT_PG_URL))
    engine = create_engine(url, poolclass=NullPool)
    problem = None
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    except SQLAlchemyError as exc:
        problem = f"{exc.__class__.__name__}: {exc}"
    finally:
        engine.dispose()
    if problem is not None:  # failed outside the except block: one clear message, no chain
        pytest.fail(
            f"PostgreSQL is unreachable at {url.render_as_string(hide_password=True)}: {problem}\n"
            f"Start it, point {PG_URL_ENV} at a server, or set {PG_SKIP_ENV}=1 to skip the "
            "PostgreSQL tests locally (CI must run them).",
            pytrace=False,
        )
    return url


@contextmanager
def fresh_postgres_database(server: URL) -> Iterator[URL]:
    """A new, empty database on ``server``, dropped (connections and all) on exit."""
    name = f"sigshare_t_{secrets.token_hex(6)}"
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


@pytest.fixture(params=BACKENDS)
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no tables at all, on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hub.db'}"
        return
    with fresh_postgres_database(request.getfixturevalue("postgres_server")) as url:
        yield _url_string(url)


@pytest.fixture(scope="session")
def migrated_postgres_url(postgres_server: URL) -> Iterator[str]:
    """One migrated PostgreSQL database per pytest process; tests empty its tables first."""
    with fresh_postgres_database(postgres_server) as url:
        migrate.upgrade(url)
        yield _url_string(url)


@pytest.fixture(scope="session")
def migrated_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A freshly migrated SQLite file's bytes, copied for every test (faster than migrating)."""
    path = tmp_path_factory.mktemp("template") / "hub.db"
    migrate.upgrade(f"sqlite:///{path}")  # closing the last connection folds the WAL into the file
    return path.read_bytes()


def _empty_tables(url: str) -> None:
    engine = create_engine(url, poolclass=NullPool)
    tables = ", ".join(f'"{table.name}"' for table in metadata.sorted_tables)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("SET LOCAL lock_timeout = '10s'")
            connection.exec_driver_sql(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    finally:
        engine.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database migrated to head, on each backend."""
    if request.param == "sqlite":
        path = tmp_path / "hub.db"
        path.write_bytes(request.getfixturevalue("migrated_sqlite_template"))
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("migrated_postgres_url")
    _empty_tables(url)
    return url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_engine(migrated_postgres_url: str) -> Iterator[Engine]:
    """For the few tests of a PostgreSQL-only mechanism (advisory locks, interleaved writers)."""
    _empty_tables(migrated_postgres_url)
    engine = make_engine(migrated_postgres_url)
    yield engine
    engine.dispose()
