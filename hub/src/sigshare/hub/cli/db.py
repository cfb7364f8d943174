"""``sigshare-hub db``: create or upgrade the database schema, and report its revision."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from sigshare.client.console import Console
from sigshare.client.exit_codes import ExitCode
from sigshare.hub.cli.context import HubContext, json_option, pass_hub
from sigshare.hub.cli.errors import DatabaseMissingError
from sigshare.hub.errors import InvalidArgumentError
from sigshare.hub.services import payloads
from sigshare.hub.storage import migrate
from sigshare.hub.storage.backup import backup_sqlite
from sigshare.hub.storage.blobs import DEFAULT_GRACE_SECONDS, store_for
from sigshare.hub.storage.database import restrict_sqlite_files, sqlite_path
from sigshare.hub.storage.files import PRIVATE_FILE_MODE

_EMPTY = "<empty>"


@click.group()
def db() -> None:
    """Create, upgrade and inspect the hub database schema."""


@db.command()
@json_option
@pass_hub
def upgrade(hub: HubContext, json_output: bool) -> None:
    """Migrate the database to the schema this hub needs (creates it when empty).

    Runs in one transaction and is safe to repeat: a current database is left as it is. An
    SQLite file (and its -wal/-shm files) that group or others may access is narrowed to 0600.
    """
    console = Console(json_output=json_output)
    with hub.guard(console):
        engine = hub.engine(migrated=False)
        before = migrate.current_revision(engine)
        migrate.upgrade(engine)
        after = migrate.current_revision(engine)
        path = sqlite_path(engine.url)
        narrowed = [] if path is None else restrict_sqlite_files(path)
    for file, mode in narrowed:
        console.err.print(
            escape(f"narrowed {file} from mode {mode:04o} to {PRIVATE_FILE_MODE:04o}")
        )
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


@db.command()
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The backup file to create (mode 0600; never overwritten).",
)
@json_option
@pass_hub
def backup(hub: HubContext, out: Path, json_output: bool) -> None:
    """Copy an SQLite hub database to --out while hubs keep serving (SQLite's backup API).

    The copy is a consistent snapshot; restore it by stopping the hub and putting it in place
    of the database file. The payload blobs it references are copied to OUT.blobs (restore
    that as DATABASE.blobs, or point --blob-dir at it). PostgreSQL databases are backed up
    with pg_dump instead (and the blob directory copied after it).
    """
    console = Console(json_output=json_output)
    with hub.guard(console):
        source = sqlite_path(hub.engine(migrated=False).url)
        if source is None:
            raise InvalidArgumentError(
                f"{hub.database} is not an SQLite file: back it up with pg_dump "
                "(docs/operator-guide.md, section 7)"
            )
        if not source.is_file():
            raise DatabaseMissingError(f"{hub.database}: no such database file")
        made = backup_sqlite(source, out, store_for(hub.engine(migrated=False)))
    if json_output:
        console.emit_json(
            {
                "database": hub.database,
                "backup": str(made.path),
                "bytes": made.size,
                "revision": made.revision,
                "blob_dir": None if made.blob_dir is None else str(made.blob_dir),
                "blobs": made.blobs,
                "blob_bytes": made.blob_bytes,
            }
        )
    else:
        blobs = (
            ""
            if made.blob_dir is None
            else (f"; {made.blobs} payload blobs ({made.blob_bytes} bytes) to {made.blob_dir}")
        )
        console.print(
            escape(
                f"{hub.database}: backed up to {made.path} "
                f"({made.size} bytes, revision {made.revision or _EMPTY}){blobs}"
            )
        )


@db.command()
@click.option(
    "--sweep",
    is_flag=True,
    help="Delete blobs no submission references once untouched for --grace seconds.",
)
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=DEFAULT_GRACE_SECONDS,
    show_default=True,
    help="Seconds an unreferenced blob is kept: uploads in flight, and a pg_dump followed by a "
    "copy of the directory, need it. Use 0 only while no hub serves this database.",
)
@json_option
@pass_hub
def blobs(hub: HubContext, sweep: bool, grace: float, json_output: bool) -> None:
    """Check the payload blob store against the database (and sweep it with --sweep).

    Exits 1 if the database references a blob that is missing: restore it from a backup.
    Replicas sweep by themselves every 10 minutes.
    """
    console = Console(json_output=json_output)
    with hub.guard(console):
        engine = hub.engine()
        swept = payloads.sweep(engine, grace) if sweep else None
        found = payloads.census(engine)
        location = payloads.location(engine)
    report: dict[str, object] = {"database": hub.database, "blob_dir": None}
    if found is not None:
        report.update(
            blob_dir=location,
            referenced=len(found.referenced),
            present=len(found.present),
            missing=sorted(found.missing),
            unreferenced=len(found.unreferenced),
            staged=found.staged,
        )
    if swept is not None:
        report["swept"] = {
            "removed": swept.removed,
            "bytes": swept.removed_bytes,
            "kept_young": swept.kept_young,
        }
    if json_output:
        console.emit_json(report)
    elif found is None:
        console.print(escape(f"{hub.database}: payloads are kept in the database (no blob store)"))
    else:
        console.print(
            escape(
                f"{location}: {len(found.present)} blobs, {len(found.referenced)} referenced, "
                f"{len(found.missing)} missing, {len(found.unreferenced)} unreferenced, "
                f"{found.staged} staged"
            )
        )
        if swept is not None:
            console.print(
                escape(
                    f"swept {swept.removed} files ({swept.removed_bytes} bytes); "
                    f"{swept.kept_young} younger than {grace:g} s kept"
                )
            )
        for name in sorted(found.missing):
            console.err.print(escape(f"missing: {name}"))
    if found is not None and found.missing:
        raise SystemExit(ExitCode.FAILURE)
