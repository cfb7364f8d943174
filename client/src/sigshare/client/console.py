"""The one console every command writes through: rich on a terminal, plain or JSON otherwise.

Human output goes to stdout (tables, summaries) and stderr (progress, warnings); with ``--json``
stdout carries exactly one JSON document and nothing else. Progress bars appear only when stderr
is a terminal, so cron logs stay clean.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

from rich.console import Console as RichConsole
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from sigshare.client.exit_codes import ExitCode


class Console:
    def __init__(self, *, json_output: bool = False, quiet: bool = False) -> None:
        self.json_output = json_output
        self.quiet = quiet
        self.out = RichConsole(highlight=False, soft_wrap=True)
        self.err = RichConsole(stderr=True, highlight=False, soft_wrap=True)

    def print(self, *objects: Any) -> None:
        """Human output (suppressed in JSON mode, where stdout belongs to the document)."""
        if not self.json_output and not self.quiet:
            self.out.print(*objects)

    def table(self, title: str, columns: list[str], rows: list[list[str]]) -> None:
        table = Table(title=title, title_justify="left")
        for column in columns:
            table.add_column(column, justify="left" if column == columns[0] else "right")
        for row in rows:
            table.add_row(*row)
        self.print(table)

    def warn(self, message: str) -> None:
        self.err.print(f"[yellow]warning:[/yellow] {message}")

    def emit_json(self, document: Any) -> None:
        sys.stdout.write(json.dumps(document, indent=2, sort_keys=False) + "\n")
        sys.stdout.flush()

    def abort(self, message: str, code: ExitCode) -> NoReturn:
        """The single exit path for failures: one line on stderr (and JSON on stdout if asked)."""
        if self.json_output:
            self.emit_json({"error": message, "exit_code": int(code), "status": code.name.lower()})
        self.err.print(f"[red]error:[/red] {message}")
        raise SystemExit(int(code))

    @contextmanager
    def progress(self, description: str, total: int) -> Iterator[Any]:
        """A progress bar on an interactive stderr; a no-op advance callback otherwise."""
        if self.json_output or self.quiet or not self.err.is_terminal:
            yield lambda advance=1: None
            return
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            console=self.err,
            transient=True,
        ) as progress:
            task = progress.add_task(description, total=total)
            yield lambda advance=1: progress.advance(task, advance)
