"""Tables for `sigshare-hub`, printed through the shared console, and pages of listings.

Unlike :meth:`Console.table`, a table printed to a pipe or a file keeps its natural width: rich
would otherwise fit it into 80 columns and cut cells short ("1,000…"), and a truncated count,
key id or digest in an operator's log is worse than a long line. On a terminal rich still fits
the table to the window.
"""

from __future__ import annotations

from typing import Any

from rich.measure import Measurement
from rich.table import Table

from sigshare.client.console import Console
from sigshare.hub.listing import Page

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


def page(
    console: Console,
    what: str,
    found: Page[Any],
    size: int,
    *,
    key: str,
    documents: list[dict[str, Any]],
    columns: list[str],
    rows: list[list[str]],
    nothing: str,
    order: str = "",
) -> None:
    """A page of a listing. With ``--json``: one document with the page's place in the whole
    (:func:`page_document`) and the rows' ``documents`` under ``key``. Otherwise a table titled
    with its place ("campaigns 51-100 of 312"), then the ``--cursor`` options that turn to the
    pages on either side; ``nothing`` is said when no row matches at all, ``order`` follows the
    title (", newest first")."""
    if console.json_output:
        console.emit_json({**page_document(found, size), key: documents})
        return
    if not found.items:
        console.print(
            f"no {what} past this cursor ({found.total} in all)" if found.total else nothing
        )
        return
    table(console, f"{what} {found.first}-{found.last} of {found.total}{order}", columns, rows)
    for label, cursor in (("next", found.next_cursor), ("previous", found.previous_cursor)):
        if cursor is not None:
            console.print(f"{label} page: --cursor {cursor}")


def page_document(found: Page[Any], size: int) -> dict[str, Any]:
    """A page's place in the whole, for ``--json``: pass ``next_cursor`` as ``--cursor``."""
    return {
        "total": found.total,
        "first": found.first,
        "page_size": size,
        "next_cursor": found.next_cursor,
        "previous_cursor": found.previous_cursor,
    }
