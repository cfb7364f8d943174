"""``sigshare-hub audit``: verify the hash-chained audit log and read its entries."""

from __future__ import annotations

from typing import Any

import click
from rich.markup import escape

from sigshare.client.console import Console
from sigshare.hub.cli import render
from sigshare.hub.cli.context import (
    HubContext,
    cursor_option,
    format_time,
    json_option,
    page_size_option,
    pass_hub,
)
from sigshare.hub.domain import AuditEntry, canonical_json
from sigshare.hub.listing import AuditQuery
from sigshare.hub.services.audit import search_audit_log, verify_audit_log


@click.group()
def audit() -> None:
    """Verify and read the append-only, hash-chained audit log."""


@audit.command()
@json_option
@pass_hub
def verify(hub: HubContext, json_output: bool) -> None:
    """Check every entry's hash and link; exit 1 naming the first broken entry.

    Prints the head entry's hash: record it somewhere the hub cannot rewrite, because deleting
    the newest entries leaves a shorter chain that still verifies.
    """
    console = Console(json_output=json_output)
    with hub.session(console) as session:
        result = verify_audit_log(session)
    head = result.head
    if json_output:
        console.emit_json(
            {
                "entries": result.entries,
                "head_id": None if head is None else head.id,
                "head_hash": None if head is None else head.entry_hash.hex(),
            }
        )
    elif head is None:
        console.print("audit log is empty: nothing to verify")
    else:
        console.print(
            f"audit log intact: {result.entries} entries checked; "
            f"head entry {head.id} hash {head.entry_hash.hex()}"
        )


@audit.command()
@click.option("--actor", default=None, help="Only entries by this actor (e.g. cli:alice).")
@click.option("--action", default=None, help="Only this action (e.g. principal.add).")
@cursor_option
@page_size_option
@json_option
@pass_hub
def show(
    hub: HubContext,
    *,
    actor: str | None,
    action: str | None,
    cursor: str | None,
    page_size: int,
    json_output: bool,
) -> None:
    """Show audit entries, newest first, a page at a time."""
    console = Console(json_output=json_output)
    with hub.session(console) as session:
        query = AuditQuery.parse(actor=actor, action=action, size=page_size, cursor=cursor)
        page = search_audit_log(session, query)
    render.page(
        console,
        "audit entries",
        page,
        query.size,
        key="entries",
        documents=[_document(entry) for entry in page.items],
        columns=["id", "at", "actor", "action", "target", "details"],
        rows=[
            [
                str(entry.id),
                format_time(entry.at),
                escape(entry.actor),
                escape(entry.action),
                escape(entry.target),
                escape(canonical_json(entry.details)),
            ]
            for entry in page.items
        ],
        nothing="no matching audit entries",
        order=", newest first",
    )


def _document(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": entry.at.isoformat(),
        "actor": entry.actor,
        "action": entry.action,
        "target": entry.target,
        "details": entry.details,
        "prev_hash": entry.prev_hash.hex(),
        "entry_hash": entry.entry_hash.hex(),
    }
