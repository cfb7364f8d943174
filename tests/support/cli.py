"""``sigshare-hub`` commands run in this process through click's test runner, and the tables
they print: for tests that assert a command's exit code and exact output."""

from __future__ import annotations

import json
from typing import Any

from click.testing import CliRunner, Result

from sigshare.hub.cli import cli


def invoke_hub(url: str, *args: str) -> Result:
    """``sigshare-hub --db URL ARGS``, run to completion in this process."""
    return CliRunner().invoke(cli, ["--db", url, *args])


def invoke_hub_json(url: str, *args: str, code: int = 0) -> Any:
    """The document ``sigshare-hub --db URL ARGS --json`` prints, once it exited with ``code``."""
    result = invoke_hub(url, *args, "--json")
    assert result.exit_code == code, result.output
    return json.loads(result.stdout)


def table_cells(stdout: str) -> list[list[str]]:
    """The data rows of the tables in ``stdout``, each as its stripped cell texts."""
    return [
        [cell.strip() for cell in line.split("│")[1:-1]]
        for line in stdout.splitlines()
        if line.startswith("│")
    ]
