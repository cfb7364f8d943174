"""Databases for the hub tests, and a running hub over each: every storage test runs on SQLite
and on PostgreSQL.

PostgreSQL is required, not optional: if it cannot be reached the PostgreSQL tests fail with the
reason. ``SIGSHARE_SKIP_POSTGRES=1`` skips them instead, for local runs without a server.
The server comes from ``SIGSHARE_TEST_PG_URL`` (default: ``root`` on 127.0.0.1:5432, database
``test``); each pytest process creates its own uniquely named databases there and drops them
afterwards (:mod:`tests.support.databases`), so xdist workers never share one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from sigshare.hub.storage import make_engine, migrate
from tests.support.databases import (
    PG_URL_ENV,
    empty_tables,
    fresh_postgres_database,
    postgres_server_url,
)
from tests.support.hub import RunningHub, provision, running_hub

PG_SKIP_ENV = "SIGSHARE_SKIP_POSTGRES"
BACKENDS = ["sqlite", "postgresql"]


def _url_string(url: URL) -> str:
    return url.render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_server() -> URL:
    """The PostgreSQL server to create test databases on; fails the test if unreachable."""
    if os.environ.get(PG_SKIP_ENV) == "1":
        pytest.skip(f"{PG_SKIP_ENV}=1: PostgreSQL tests skipped")
    url = postgres_server_url()
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


@pytest.fixture
def sqlite_url(tmp_path: Path, migrated_sqlite_template: bytes) -> str:
    """A migrated SQLite database of this test's own (a copy of the template)."""
    path = tmp_path / "hub.db"
    path.write_bytes(migrated_sqlite_template)
    return f"sqlite:///{path}"


@pytest.fixture
def sqlite_engine(sqlite_url: str) -> Iterator[Engine]:
    """An engine over :func:`sqlite_url`, for tests of SQLite alone."""
    engine = make_engine(sqlite_url)
    yield engine
    engine.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest) -> str:
    """An empty database migrated to head, on each backend."""
    if request.param == "sqlite":
        sqlite: str = request.getfixturevalue("sqlite_url")
        return sqlite
    url: str = request.getfixturevalue("migrated_postgres_url")
    empty_tables(url)
    return url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def hub(database_url: str) -> Iterator[RunningHub]:
    """A started hub over each backend: an admin, a coordinator, members m1–m4, ``email`` and
    ``prompt`` published (:func:`tests.support.hub.provision`)."""
    engine = make_engine(database_url)
    try:
        with running_hub(engine, provision(engine)) as running:
            yield running
    finally:
        engine.dispose()


@pytest.fixture
def postgres_engine(migrated_postgres_url: str) -> Iterator[Engine]:
    """For the few tests of a PostgreSQL-only mechanism (advisory locks, interleaved writers)."""
    empty_tables(migrated_postgres_url)
    engine = make_engine(migrated_postgres_url)
    yield engine
    engine.dispose()
