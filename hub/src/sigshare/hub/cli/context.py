"""What every `sigshare-hub` command shares: the database, the acting operator and the clock.

The group callback builds one :class:`HubContext` from ``--db``; commands receive it with
:data:`pass_hub` and open one :meth:`HubContext.session` per unit of work. The engine is created
on first use and checked once for the current schema, so commands cannot forget the check.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import click
from sqlalchemy import Engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session

from sigshare.client.console import Console
from sigshare.hub.cli.errors import DatabaseMissingError, UnsupportedDatabaseError, exit_on_error
from sigshare.hub.listing import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from sigshare.hub.storage import make_engine, migrate, session_scope
from sigshare.hub.storage.database import SUPPORTED_BACKENDS, normalize_url, sqlite_path

CLI_ACTOR_PREFIX = "cli"
MAX_ACTOR_LENGTH = 128  # the audit log's limit
POSTGRES_URL = "postgresql+psycopg2://USER@HOST/DATABASE"
POSTGRES_HINT = f"the hub ships the psycopg2 driver: use {POSTGRES_URL}"

json_option = click.option("--json", "json_output", is_flag=True, help="Print one JSON object.")
cursor_option = click.option(
    "--cursor",
    metavar="TOKEN",
    default=None,
    help="The page a previous listing named (same filters and order); default: the first.",
)
page_size_option = click.option(
    "--page-size",
    type=click.IntRange(1, MAX_PAGE_SIZE),
    default=DEFAULT_PAGE_SIZE,
    show_default=True,
    help="Rows per page.",
)


def cli_actor() -> str:
    """``cli:<local user>`` — who the audit log records for commands run on the hub host."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError, ImportError):  # no login name in containers without passwd
        return CLI_ACTOR_PREFIX
    return f"{CLI_ACTOR_PREFIX}:{user}"[:MAX_ACTOR_LENGTH] if user else CLI_ACTOR_PREFIX


def masked_url(url: str | URL) -> str:
    """The URL with any password replaced by ``***``: the only form a URL may be shown in."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "<unparsable database URL>"  # the raw text may hold a password


def format_time(moment: datetime | None) -> str:
    """Seconds-precision UTC for tables (JSON documents carry full ISO 8601)."""
    return "-" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


class HubContext:
    """The ``--db`` database of one invocation, opened lazily and disposed of on exit."""

    def __init__(self, database_url: str, *, blob_dir: Path | None = None) -> None:
        self._url = database_url
        self._blob_dir = blob_dir
        self._engine: Engine | None = None
        self._schema_checked = False
        self.actor = cli_actor()

    @property
    def database(self) -> str:
        """The database URL as it may be printed (password masked)."""
        return masked_url(self._url)

    @staticmethod
    def now() -> datetime:
        return datetime.now(UTC)

    def engine(self, *, migrated: bool = True) -> Engine:
        """The engine; unless ``migrated=False`` (``db upgrade``), only for a current schema.

        Raises the hub's typed errors; call it inside :func:`exit_on_error`.
        """
        if self._engine is None:
            self._engine = self._open(create=not migrated)
        if migrated and not self._schema_checked:
            migrate.require_current(self._engine)
            self._schema_checked = True
        return self._engine

    @contextmanager
    def guard(self, console: Console) -> Iterator[None]:
        """Errors inside leave through the CLI's error table (see :mod:`.errors`)."""
        with exit_on_error(console, self.database, self._password()):
            yield

    @contextmanager
    def session(self, console: Console) -> Iterator[Session]:
        """One unit of work on the current schema: committed if the block succeeds."""
        with self.guard(console), session_scope(self.engine()) as session:
            yield session

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def _open(self, *, create: bool) -> Engine:
        url = self._parse()
        if not create:
            _require_existing_sqlite_file(url)  # connecting would create an empty file
        try:
            return make_engine(url, blob_dir=self._blob_dir)
        except (ImportError, ArgumentError) as exc:  # a driver unknown or not installed
            hint = f" ({POSTGRES_HINT})" if url.get_backend_name() == "postgresql" else ""
            raise UnsupportedDatabaseError(
                f"cannot load the database driver for {self.database}: {exc}{hint}"
            ) from exc

    def _parse(self) -> URL:
        try:
            url = normalize_url(self._url)  # postgresql:// and postgres:// → psycopg2
        except (ArgumentError, ValueError) as exc:
            # Not quoted back: the text may hold a password.
            raise UnsupportedDatabaseError(
                f"--db is not a valid database URL (expected sqlite:///PATH or {POSTGRES_URL})"
            ) from exc
        backend = url.get_backend_name()
        if backend not in SUPPORTED_BACKENDS:
            raise UnsupportedDatabaseError(
                f"unsupported database backend {backend!r} in {self.database}: "
                f"use one of {', '.join(SUPPORTED_BACKENDS)}"
            )
        return url

    def _password(self) -> str | None:
        try:
            password = make_url(self._url).password
        except (ArgumentError, ValueError):
            return None
        return None if password is None else str(password)


def _require_existing_sqlite_file(url: URL) -> None:
    path = sqlite_path(url)
    if path is not None and not path.exists():
        raise DatabaseMissingError(
            f"no hub database at {path}: check --db or $SIGSHARE_HUB_DB, "
            "or create it with `sigshare-hub db upgrade`"
        )


pass_hub = click.make_pass_decorator(HubContext)
