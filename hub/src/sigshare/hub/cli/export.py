"""``sigshare-hub export``: every shared indicator and active campaign as CSV, JSON or a STIX 2.1
bundle, written to a private file (or stdout) and recorded in the audit log.

Exports hold opaque ids and aggregates only, but they are still the forum's confidential
results: files are created with mode 0600, written to a temporary file beside the target and
renamed into place, so a reader never sees half an export and an existing file is replaced
only with ``--force``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import tempfile
from pathlib import Path
from typing import cast

import click
from rich.markup import escape

from sigshare.client.console import Console
from sigshare.hub.cli.context import HubContext, json_option, pass_hub
from sigshare.hub.errors import AlreadyExistsError, InvalidArgumentError
from sigshare.hub.services.exports import (
    DEFAULT_TLP,
    EXPORT_FORMATS,
    TLP_LEVELS,
    ExportFormat,
    Tlp,
    export_document,
)

STDOUT = "-"


@click.command()
@click.argument("fmt", metavar="FORMAT", type=click.Choice(EXPORT_FORMATS))
@click.option(
    "--out",
    required=True,
    metavar="FILE",
    help="Where to write the export (created with mode 0600); '-' for stdout.",
)
@click.option(
    "--tlp",
    type=click.Choice(TLP_LEVELS),
    default=None,
    help=f"TLP 2.0 marking of a STIX bundle's objects (default {DEFAULT_TLP}).",
)
@click.option("--force", is_flag=True, help="Replace FILE if it exists.")
@json_option
@pass_hub
def export(
    hub: HubContext,
    *,
    fmt: str,
    out: str,
    tlp: str | None,
    force: bool,
    json_output: bool,
) -> None:
    """Export every shared indicator and active campaign as FORMAT (csv, json or stix).

    Opaque ids and aggregates only: never tokens, raw values or prompt texts. STIX bundles carry
    a TLP 2.0 marking and the sigshare extension (docs/stix-extension.md). Each export is
    recorded in the audit log.
    """
    if tlp is not None and fmt != "stix":
        raise click.UsageError("--tlp marks STIX bundles only")
    if json_output and out == STDOUT:
        raise click.UsageError("--json needs --out FILE: with --out - stdout carries the export")
    level = cast(Tlp, tlp or DEFAULT_TLP)
    console = Console(json_output=json_output)
    target = None if out == STDOUT else Path(out)
    with hub.session(console) as session:
        if target is not None and target.is_dir():
            raise InvalidArgumentError(f"{target} is a directory: name the export file")
        if target is not None and not force and target.exists():
            raise AlreadyExistsError(f"{target} exists: pass --force to replace it")
        document = export_document(
            session, cast(ExportFormat, fmt), hub.now(), actor=hub.actor, tlp=level
        )
        # Written before the audit entry commits: if writing fails, no export is recorded.
        if target is None:
            sys.stdout.flush()
            sys.stdout.buffer.write(document.content)
            sys.stdout.buffer.flush()
        else:
            write_private(target, document.content, replace=force)
    marking = f", TLP:{level.upper()}" if fmt == "stix" else ""
    summary = (
        f"exported {document.indicators} shared indicators and {document.campaigns} campaigns "
        f"as {fmt}{marking} to {'stdout' if target is None else target} "
        f"({len(document.content):,} bytes)"
    )
    if json_output:
        console.emit_json(
            {
                "format": fmt,
                "path": str(target),
                "bytes": len(document.content),
                "sha256": hashlib.sha256(document.content).hexdigest(),
                "media_type": document.media_type,
                "indicators": document.indicators,
                "campaigns": document.campaigns,
                "tlp": level if fmt == "stix" else None,
            }
        )
    elif target is None:
        console.err.print(escape(summary))
    else:
        console.print(escape(summary))


def write_private(path: Path, content: bytes, *, replace: bool) -> None:
    """Write ``content`` to ``path`` atomically with mode 0600.

    The bytes go to a temporary file in the same directory (``mkstemp`` creates it 0600),
    are synced, and the file is then linked to ``path`` — which fails if ``path`` exists, even
    if it appeared meanwhile — or, with ``replace``, renamed over it.
    """
    try:
        descriptor, temporary = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
        )
    except OSError as error:
        raise InvalidArgumentError(f"cannot write {path}: {error.strerror}") from None
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(content)
            stream.flush()
            os.fsync(stream.fileno())
        if replace:
            os.replace(temporary, path)
        else:
            _link_new(Path(temporary), path)
        _sync_directory(path.parent)
    except OSError as error:
        raise InvalidArgumentError(f"cannot write {path}: {error.strerror}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def _link_new(temporary: Path, path: Path) -> None:
    """Give the finished temporary file the name ``path``, never replacing an existing file."""
    try:
        os.link(temporary, path)
    except FileExistsError:
        raise AlreadyExistsError(f"{path} exists: pass --force to replace it") from None
    except OSError:
        # A file system without hard links: check, then rename (a narrow race remains).
        if path.exists():
            raise AlreadyExistsError(f"{path} exists: pass --force to replace it") from None
        os.replace(temporary, path)


def _sync_directory(directory: Path) -> None:
    """Make the rename durable (best effort: not every platform opens directories)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
