"""The ``sigshare-hub`` command: one module per command group, all output through one console.

Command groups are listed in :data:`COMMANDS` by import path and imported only when invoked, so
an admin command does not pay for importing the gRPC stack and a new group is one line here.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import click

from sigshare.hub.cli.context import HubContext
from sigshare.hub.storage import default_database_url

COMMANDS: dict[str, str] = {
    "audit": "sigshare.hub.cli.audit:audit",
    "db": "sigshare.hub.cli.db:db",
    "export": "sigshare.hub.cli.export:export",
    "health": "sigshare.hub.cli.health:health",
    "keys": "sigshare.hub.cli.keys:keys",
    "member": "sigshare.hub.cli.member:member",
    "params": "sigshare.hub.cli.params:params",
    "review": "sigshare.hub.cli.review:review",
    "serve": "sigshare.hub.cli.serve:serve",
    "web": "sigshare.hub.cli.web:web",
}
"""Command name → ``module:attribute`` of its click command or group."""


class _LazyGroup(click.Group):
    """A group whose subcommands come from :data:`COMMANDS`, imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module_name, _, attribute = target.partition(":")
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} is not a click command")
        return command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db",
    "database_url",
    metavar="URL",
    default=None,
    help="Database URL (default: $SIGSHARE_HUB_DB, else the SQLite file sigshare-hub.db in "
    "the current directory).",
)
@click.option(
    "--blob-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="SIGSHARE_HUB_BLOB_DIR",
    default=None,
    help="Directory of submission payloads, shared by every replica of this hub (default: "
    "$SIGSHARE_HUB_BLOB_DIR, else DATABASE.blobs beside an SQLite file; PostgreSQL without "
    "one keeps payloads in the database).",
)
@click.version_option(package_name="sigshare-hub", prog_name="sigshare-hub")
@click.pass_context
def cli(ctx: click.Context, database_url: str | None, blob_dir: Path | None) -> None:
    """sigshare-hub: administer and run the hub that intersects members' keyed sketches.

    Every command except `db upgrade` refuses a database whose schema is not current.
    """
    hub = HubContext(database_url or default_database_url(), blob_dir=blob_dir)
    ctx.obj = hub
    ctx.call_on_close(hub.close)


def main() -> None:
    cli()
