"""Alembic environment of the hub database.

Migrations normally run through :mod:`sigshare.hub.storage.migrate`, which hands over an open
connection inside a transaction. Without one (a developer running ``alembic`` against
``sqlalchemy.url`` to autogenerate a revision) an engine is made the hub's way.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from sigshare.hub.storage.database import default_database_url, make_engine
from sigshare.hub.storage.models import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things in place: batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(context.config.get_main_option("sqlalchemy.url") or default_database_url())
    try:
        with engine.connect() as fresh:
            _run(fresh)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run them against a database")
_run_online()
