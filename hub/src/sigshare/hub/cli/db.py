"""``sigshare-hub db``: create or upgrade the database schema, and report its revision."""

from __future__ import annotations

import click

from sigshare.client.console import Console
from sigshare.hub.cli.context import HubContext, json_option, pass_hub
from sigshare.hub.storage import migrate

_EMPTY = "<empty>"


@click.group()
def db() -> None:
    """Create, upgrade and inspect the hub database schema."""


@db.command()
@json_option
@pass_hub
def upgrade(hub: HubContext, json_output: bool) -> None:
    """Migrate the database to the schema this hub needs (creates it when empty).

    Runs in one transaction and is safe to repeat: a current database is left as it is.
    """
    console = Console(json_output=json_output)
    with hub.guard(console):
        engine = hub.engine(migrated=False)
        before = migrate.current_revision(engine)
        migrate.upgrade(engine)
        after = migrate.current_revision(engine)
    if json_output:
        console.emit_json(
            {"database": hub.database, "from": before, "to": after, "upgraded": before != after}
        )
    elif before == after:
        console.print(f"{hub.database}: already at revision {after} (head)")
    else:
        console.print(f"{hub.database}: upgraded from revision {before or _EMPTY} to {after}")


@db.command()
@json_option
@pass_hub
def status(hub: HubContext, json_output: bool) -> None:
    """Show the database's schema revision; exit 3 unless it is the one this hub needs."""
    console = Console(json_output=json_output)
    with hub.guard(console):
        current = migrate.current_revision(hub.engine())  # engine() refuses an old schema
    head = migrate.head_revision()
    if json_output:
        console.emit_json(
            {"database": hub.database, "current": current, "head": head, "up_to_date": True}
        )
    else:
        console.print(f"{hub.database}: at revision {current} (head)")
