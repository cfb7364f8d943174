"""``sigshare keygen``: create a forum secret file."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from sigshare.client.console import Console
from sigshare.client.exit_codes import ExitCode
from sigshare.sketch.errors import KeyFileError
from sigshare.sketch.keys import ForumSecret, write_secret_file


def _default_key_id() -> str:
    return datetime.now(UTC).strftime("k%Y%m%d")


@click.command()
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the secret file (created with mode 0600).",
)
@click.option("--key-id", default=None, help="Key epoch id (default: k<YYYYMMDD>).")
@click.option("--force", is_flag=True, help="Replace an existing file (invalidates old sketches).")
@click.option("--json", "json_output", is_flag=True, help="Print one JSON object.")
def keygen(out_path: Path, key_id: str | None, force: bool, json_output: bool) -> None:
    """Generate a new forum secret (32 random bytes) and write it to --out.

    Run this once per key epoch on behalf of the forum and hand the file to each member out of
    band. The hub must never receive it. The secret itself is never printed.
    """
    console = Console(json_output=json_output)
    try:
        secret = ForumSecret.generate(key_id or _default_key_id())
        written = write_secret_file(out_path, secret, overwrite=force)
    except KeyFileError as error:
        console.abort(str(error), ExitCode.CONFIG)
    except OSError as error:
        console.abort(f"{out_path}: {error.strerror}", ExitCode.CONFIG)
    if json_output:
        console.emit_json({"path": str(written), "key_id": secret.key_id, "mode": "0600"})
    else:
        console.print(f"wrote forum secret [bold]{secret.key_id}[/bold] to {written} (mode 0600)")
