"""Throwaway databases on the PostgreSQL server the tests and benchmarks use.

The server comes from ``SIGSHARE_TEST_PG_URL`` (default: ``root`` on 127.0.0.1:5432, database
``test``). Each database gets a random name, so pytest-xdist workers and concurrent runs never
share one, and is dropped with its connections when the block ends.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

from sigshare.hub.storage.models import metadata

PG_URL_ENV = "SIGSHARE_TEST_PG_URL"
DEFAULT_PG_URL = "postgresql+psycopg2://root@127.0.0.1:5432/test"
PG_SKIP_ENV = "SIGSHARE_SKIP_POSTGRES"
"""``1``: skip the PostgreSQL tests (local runs without a server; CI must run them)."""
BACKENDS = ["sqlite", "postgresql"]
"""What the tests of every backend are parametrised over."""


def postgres_server_url() -> URL:
    """The PostgreSQL server of the tests: ``SIGSHARE_TEST_PG_URL`` or the local default."""
    return make_url(os.environ.get(PG_URL_ENV, DEFAULT_PG_URL))


def url_string(url: URL) -> str:
    """``url`` as the hub's ``--db`` option takes it (password included: a test server's)."""
    return url.render_as_string(hide_password=False)


@contextmanager
def fresh_postgres_database(server: URL, prefix: str = "sigshare_t") -> Iterator[URL]:
    """A new, empty database on ``server`` named ``prefix`` and a random suffix, dropped
    (connections and all) on exit."""
    name = f"{prefix}_{secrets.token_hex(6)}"
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


def empty_tables(url: str) -> None:
    """Delete every row of every hub table of the PostgreSQL database at ``url``."""
    engine = create_engine(url, poolclass=NullPool)
    tables = ", ".join(f'"{table.name}"' for table in metadata.sorted_tables)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("SET LOCAL lock_timeout = '10s'")
            connection.exec_driver_sql(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    finally:
        engine.dispose()
