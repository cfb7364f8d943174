"""Schema migrations, run programmatically: the Alembic configuration is here, not in an ini.

The migration scripts ship inside the package (``storage/migrations``), so an installed hub finds
them next to this module. Databases are only ever built by these migrations — tests included.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine
from sqlalchemy.engine import URL

from sigshare.hub.errors import DatabaseNotMigratedError, HubError
from sigshare.hub.storage.database import make_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


@contextmanager
def _engine(target: str | URL | Engine) -> Iterator[Engine]:
    if isinstance(target, Engine):
        yield target
        return
    engine = make_engine(target)
    try:
        yield engine
    finally:
        engine.dispose()


@contextmanager
def _migration_connection(engine: Engine) -> Iterator[Connection]:
    """A connection inside one transaction, with SQLite's foreign keys off while it runs.

    SQLite batch migrations copy a table, drop the original and rename the copy; with foreign
    keys on, that DROP deletes every referencing row through ON DELETE CASCADE (submission
    payloads, for one). The pragma only takes effect outside a transaction, so it is set before
    BEGIN, the foreign keys are checked before COMMIT, and the connection gets them back after.
    """
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            _sqlite_foreign_keys(connection, "OFF")
        try:
            with connection.begin():
                yield connection
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                    if broken:
                        raise HubError(f"migration left rows with broken foreign keys: {broken}")
        finally:
            if sqlite:
                _sqlite_foreign_keys(connection, "ON")


def _sqlite_foreign_keys(connection: Connection, state: str) -> None:
    # On the driver's connection: through SQLAlchemy it would first BEGIN, where it is ignored.
    driver = connection.connection.driver_connection
    assert driver is not None
    driver.execute(f"PRAGMA foreign_keys = {state}")


def upgrade(target: str | URL | Engine, revision: str = "head") -> None:
    """``alembic upgrade <revision>`` on the database at ``target``, in one transaction."""
    with _engine(target) as engine, _migration_connection(engine) as connection:
        command.upgrade(_config(connection), revision)


def downgrade(target: str | URL | Engine, revision: str) -> None:
    """``alembic downgrade <revision>`` (``"base"`` empties the schema), in one transaction."""
    with _engine(target) as engine, _migration_connection(engine) as connection:
        command.downgrade(_config(connection), revision)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at; ``None`` for a database never migrated."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    """The newest revision this code ships."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    if head is None:
        raise HubError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def require_current(engine: Engine) -> None:
    """Raise :class:`DatabaseNotMigratedError` unless the database is at :func:`head_revision`."""
    current, expected = current_revision(engine), head_revision()
    if current != expected:
        raise DatabaseNotMigratedError(current, expected)
