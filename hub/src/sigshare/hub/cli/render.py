"""Tables for `sigshare-hub`, printed through the shared console.

Unlike :meth:`Console.table`, a table printed to a pipe or a file keeps its natural width: rich
would otherwise fit it into 80 columns and cut cells short ("1,000…"), and a truncated count,
key id or digest in an operator's log is worse than a long line. On a terminal rich still fits
the table to the window.
"""

from __future__ import annotations

from rich.measure import Measurement
from rich.table import Table

from sigshare.client.console import Console

_UNBOUNDED = 1 << 16


def table(console: Console, title: str, columns: list[str], rows: list[list[str]]) -> None:
    """Print ``rows`` under ``columns``: the first column left-aligned, the others right."""
    rendered = Table(title=title, title_justify="left")
    for column in columns:
        rendered.add_column(column, justify="left" if column == columns[0] else "right")
    for row in rows:
        rendered.add_row(*row)
    out = console.out
    if not out.is_terminal:
        rendered.width = Measurement.get(
            out, out.options.update_width(_UNBOUNDED), rendered
        ).maximum
    console.print(rendered)
