"""Databases for the hub tests, and a running hub over each: every storage test runs on SQLite
and on PostgreSQL.

The PostgreSQL server (``postgres_server``) and ``empty_database_url`` come from
``tests/conftest.py``, which says how the server is found and when its tests are skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import URL

from sigshare.hub.storage import make_engine, migrate
from tests.support.databases import BACKENDS, empty_tables, fresh_postgres_database, url_string
from tests.support.hub import RunningHub, provision, running_hub


@pytest.fixture(scope="session")
def migrated_postgres_url(postgres_server: URL) -> Iterator[str]:
    """One migrated PostgreSQL database per pytest process; tests empty its tables first."""
    with fresh_postgres_database(postgres_server) as url:
        migrate.upgrade(url)
        yield url_string(url)


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
