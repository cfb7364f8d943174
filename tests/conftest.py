"""Fixtures every test directory may use: the PostgreSQL server the tests create their databases
on, and an empty database on each backend.

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
from sqlalchemy import create_engine
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from tests.support.databases import (
    BACKENDS,
    PG_SKIP_ENV,
    PG_URL_ENV,
    fresh_postgres_database,
    postgres_server_url,
    url_string,
)


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
        yield url_string(url)
