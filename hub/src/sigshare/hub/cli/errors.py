"""The one place where the hub's typed errors become exit codes and messages for `sigshare-hub`.

Commands never catch errors themselves: they run their work inside :func:`exit_on_error`, which
exits with the code the error's class declares and leaves through :meth:`Console.abort`.
Database URLs can carry passwords, so every message here names the database by its masked URL
only.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

from alembic.util import CommandError
from rich.markup import escape
from sqlalchemy.exc import OperationalError

from sigshare.client.console import Console
from sigshare.client.exit_codes import ExitCode
from sigshare.hub.errors import HubError


class UnsupportedDatabaseError(HubError):
    """``--db`` is not a URL of a supported backend with an installed driver."""

    code = "unsupported_database"
    exit_code = ExitCode.CONFIG


class DatabaseMissingError(HubError):
    """The SQLite file ``--db`` names does not exist (and only `db upgrade` may create it)."""

    code = "database_missing"
    exit_code = ExitCode.CONFIG


def exit_code_for(error: HubError) -> ExitCode:
    """The exit code ``error``'s class declares (see :mod:`sigshare.hub.errors`)."""
    return error.exit_code


def abort(console: Console, message: str, code: ExitCode) -> NoReturn:
    """:meth:`Console.abort`, with ``message`` shown literally on a terminal.

    The console renders rich markup; messages quote user input (``'[x]'`` would vanish), so they
    are escaped for human output. A JSON document carries the message as it is.
    """
    console.abort(message if console.json_output else escape(message), code)


def _first_line(error: BaseException, secret: str | None) -> str:
    text = str(error).strip().splitlines()
    line = text[0] if text else error.__class__.__name__
    return line.replace(secret, "***") if secret else line


@contextmanager
def exit_on_error(console: Console, database: str, password: str | None = None) -> Iterator[None]:
    """Run a command's work; turn a hub or database error into its exit code and one message.

    ``database`` is the masked URL to name in messages; ``password``, if any, is scrubbed from
    driver messages in case a driver ever echoes it.
    """
    try:
        yield
    except HubError as error:
        abort(console, str(error), exit_code_for(error))
    except OperationalError as error:
        reason = _first_line(error.orig if error.orig is not None else error, password)
        abort(console, f"cannot use the database at {database}: {reason}", ExitCode.CONFIG)
    except CommandError as error:  # Alembic: e.g. the database is at a revision we do not know
        abort(
            console,
            f"cannot migrate the database at {database}: {_first_line(error, password)}",
            ExitCode.CONFIG,
        )
