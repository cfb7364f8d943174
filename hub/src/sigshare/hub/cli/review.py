"""``sigshare-hub review``: the coordinators' review on the hub host — overlap matrices, shared
indicators and campaigns, and the review workflow (status, assignee, notes, history).

What it shows is what the console shows: opaque ids and aggregates, the names of the members
behind an indicator only where the kind's policy reveals them. Changes are recorded as the CLI
actor (``cli:<user>``) in the record's history and the audit log; reads are audited too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.markup import escape
from sqlalchemy.orm import Session

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
from sigshare.hub.domain import NAME_RULE, RecordType, ReviewEvent, ReviewStatus, is_valid_name
from sigshare.hub.errors import InvalidArgumentError
from sigshare.hub.listing import SORTS, RecordQuery
from sigshare.hub.services import audit, parameters, reviews
from sigshare.hub.services.coordinator_views import (
    DEFAULT_FLAG_FACTOR,
    OverlapMatrix,
    overlap_matrix,
)
from sigshare.hub.services.coordinator_views import submissions as list_submissions
from sigshare.hub.services.exports import campaign_record, indicator_record
from sigshare.hub.storage.reviews import RecordState

STATUSES = [status.value for status in ReviewStatus]
_Command = TypeVar("_Command", bound=Callable[..., Any])


@click.group()
def review() -> None:
    """Review overlaps, shared indicators and campaigns; move them through the workflow
    new → triaged → confirmed | dismissed, assign them and keep notes."""


def _check_name(value: str | None, what: str) -> None:
    """Refuse a malformed kind or family before it is looked up or written to the audit log."""
    if value is not None and not is_valid_name(value):
        raise InvalidArgumentError(f"{what} {value!r} is not a valid name: {NAME_RULE}")


def _audit_read(hub: HubContext, session: Session, action: str, target: str | None) -> None:
    audit.record_read(session, hub.actor, action, target, hub.now())


def _text(value: object) -> str:
    """A table cell: data shown literally (a category ``[b]`` must not turn into markup)."""
    if value is None or value in ((), []):
        return "-"
    if isinstance(value, tuple | list):
        return escape(", ".join(str(item) for item in value))
    return escape(str(value))


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


# ---------------------------------------------------------------------------------- overlaps


@review.command()
@click.option("--kind", default=None, help="Only this indicator kind (default: every kind).")
@json_option
@pass_hub
def overlaps(hub: HubContext, kind: str | None, json_output: bool) -> None:
    """Estimated numbers of items each pair of members shares, per indicator kind.

    The diagonal is each member's own estimated count. Estimates come from the members' current
    Bloom filters (Swamidass–Baldi / Papapetrou), with their standard errors in --json.
    """
    console = Console(json_output=json_output)
    with hub.session(console) as session:
        _check_name(kind, "kind")
        now = hub.now()
        kinds = [kind] if kind else [p.kind for p in parameters.list_parameters(session)[0]]
        matrices = [overlap_matrix(session, name, now) for name in kinds]
        _audit_read(hub, session, "review.overlap", kind)
    if json_output:
        console.emit_json({"kinds": [_matrix_document(matrix) for matrix in matrices]})
        return
    if not matrices:
        console.print("no indicator kinds configured: use `sigshare-hub params set KIND …`")
    for matrix in matrices:
        if not matrix.members:
            console.print(f"{matrix.kind}: no member has an active filter")
            continue
        render.table(
            console,
            f"{matrix.kind}: estimated shared items (members × members)",
            ["member", *matrix.members],
            [
                [name, *(_estimate(value) for value in matrix.estimate[row].tolist())]
                for row, name in enumerate(matrix.members)
            ],
        )


@review.command()
@click.option("--kind", default=None, help="Only this kind or MinHash family (default: all).")
@click.option("--flagged", is_flag=True, help="Only submissions with a probing flag.")
@click.option(
    "--flag-factor",
    type=float,
    default=DEFAULT_FLAG_FACTOR,
    show_default=True,
    help="Flag a rise of the declared count or of the tokens asked over this many times the "
    "member's previous submission.",
)
@json_option
@pass_hub
def submissions(
    hub: HubContext, kind: str | None, flagged: bool, flag_factor: float, json_output: bool
) -> None:
    """Every member's current submissions: declared count, distinct tokens asked about, and
    flags for jumps that look like probing (claiming values to query them)."""
    console = Console(json_output=json_output)
    with hub.session(console) as session:
        _check_name(kind, "kind")
        views = list_submissions(session, kind or "", flag_factor=flag_factor)
        _audit_read(hub, session, "review.submissions", kind)
    if flagged:
        views = [view for view in views if view.flags]
    if json_output:
        console.emit_json(
            {
                "submissions": [
                    {
                        "member": view.member,
                        "kind": view.submission.family_kind,
                        "submission": view.submission.id,
                        "created_at": view.submission.created_at.isoformat(),
                        "declared_count": view.submission.declared_count,
                        "tokens_asked": view.submission.tokens_asked,
                        "flags": list(view.flags),
                    }
                    for view in views
                ]
            }
        )
        return
    if not views:
        console.print("no flagged submissions" if flagged else "no active submissions")
        return
    render.table(
        console,
        "current submissions",
        ["member", "kind", "submitted", "declared", "tokens asked", "flags"],
        [
            [
                _text(view.member),
                _text(view.submission.family_kind),
                format_time(view.submission.created_at),
                f"{view.submission.declared_count:,}",
                f"{view.submission.tokens_asked:,}",
                _text(view.flags),
            ]
            for view in views
        ],
    )


def _estimate(value: float) -> str:
    return f"{value:,.0f}" if math.isfinite(value) else "?"


def _matrix_document(matrix: OverlapMatrix) -> dict[str, Any]:
    return {
        "kind": matrix.kind,
        "members": matrix.members,
        "estimate": [[_finite(v) for v in row] for row in matrix.estimate.tolist()],
        "stderr": [[_finite(v) for v in row] for row in matrix.stderr.tolist()],
    }


# ---------------------------------------------------------------------------------- listings

_listing_options = [
    click.option("--status", type=click.Choice(STATUSES), default=None, help="Only this status."),
    click.option("--category", default=None, help="Only records with this category."),
    click.option("--assignee", default=None, help="Only records assigned to this name."),
    click.option("--asc", is_flag=True, help="Ascending order (default: descending)."),
    cursor_option,
    page_size_option,
]


def _with_listing_options(command: _Command) -> _Command:
    for option in reversed(_listing_options):
        command = option(command)
    return command


def _query(
    record_type: RecordType,
    *,
    scope: str | None,
    status: str | None,
    category: str | None,
    assignee: str | None,
    sort: str,
    asc: bool,
    cursor: str | None,
    page_size: int,
) -> RecordQuery:
    return RecordQuery.parse(
        record_type,
        scope=scope,
        status=status,
        category=category,
        assignee=assignee,
        sort=sort,
        descending=not asc,
        size=page_size,
        cursor=cursor,
    )


@review.command()
@click.option("--kind", default=None, help="Only this indicator kind.")
@click.option(
    "--sort",
    type=click.Choice(SORTS[RecordType.INDICATOR]),
    default="created",
    show_default=True,
    help="Order of the rows.",
)
@_with_listing_options
@json_option
@pass_hub
def indicators(
    hub: HubContext,
    /,
    *,
    kind: str | None,
    json_output: bool,
    **listing: Any,
) -> None:
    """List shared indicators: opaque ids, kinds, reporters, categories, dates, review state.

    Reporter names appear only for kinds whose policy reveals members.
    """
    console = Console(json_output=json_output)
    with hub.session(console) as session:
        query = _query(RecordType.INDICATOR, scope=kind, **listing)
        found = reviews.indicators(session, query)
        _audit_read(hub, session, "review.indicators", query.scope)
    render.page(
        console,
        "shared indicators",
        found,
        query.size,
        key="indicators",
        documents=[indicator_record(i) for i in found.items],
        columns=[
            "id",
            "kind",
            "reporters",
            "names",
            "categories",
            "first seen",
            "last seen",
            "status",
            "assignee",
        ],
        rows=[
            [
                i.id,
                i.kind,
                str(i.reporters),
                _text(i.reporter_names),
                _text(i.categories),
                format_time(i.first_seen),
                format_time(i.last_seen),
                i.status.value,
                _text(i.assignee),
            ]
            for i in found.items
        ],
        nothing="no shared indicators match",
    )


@review.command()
@click.option("--family", default=None, help="Only this MinHash family.")
@click.option(
    "--sort",
    type=click.Choice(SORTS[RecordType.CAMPAIGN]),
    default="created",
    show_default=True,
    help="Order of the rows.",
)
@_with_listing_options
@json_option
@pass_hub
def campaigns(
    hub: HubContext,
    /,
    *,
    family: str | None,
    json_output: bool,
    **listing: Any,
) -> None:
    """List active campaigns: members involved, similarity, volume, categories, review state.

    Campaigns are recomputed first for families whose submissions changed.
    """
    console = Console(json_output=json_output)
    with hub.session(console) as session:
        query = _query(RecordType.CAMPAIGN, scope=family, **listing)
        found = reviews.campaigns(session, query, hub.now())
        _audit_read(hub, session, "review.campaigns", query.scope)
    render.page(
        console,
        "campaigns",
        found,
        query.size,
        key="campaigns",
        documents=[campaign_record(c) for c in found.items],
        columns=[
            "id",
            "family",
            "members",
            "similarity",
            "volume",
            "categories",
            "status",
            "assignee",
        ],
        rows=[
            [
                c.id,
                c.family,
                _text(c.members),
                f"{c.similarity:.2f}",
                f"{c.volume:,}",
                _text(c.categories),
                c.status.value,
                _text(c.assignee),
            ]
            for c in found.items
        ],
        nothing="no campaigns match",
    )


# ---------------------------------------------------------------------------------- workflow


def _event_document(event: ReviewEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "record_type": event.record_type.value,
        "record_id": event.record_id,
        "actor": event.actor,
        "at": event.at.isoformat(),
        "kind": event.kind.value,
        "from_status": None if event.from_status is None else event.from_status.value,
        "to_status": None if event.to_status is None else event.to_status.value,
        "assignee": event.assignee,
        "note": event.note,
    }


@review.command("set-status")
@click.argument("record_id", metavar="ID")
@click.argument("status", type=click.Choice(STATUSES))
@click.option("--note", default=None, help="Why: kept in the record's history.")
@json_option
@pass_hub
def set_status(
    hub: HubContext, record_id: str, status: str, note: str | None, json_output: bool
) -> None:
    """Move indicator or campaign ID to STATUS.

    Allowed: new → triaged | dismissed, triaged → confirmed | dismissed, and confirmed or
    dismissed back to triaged to reopen a decision. Anything else is refused (exit 3).
    """
    console = Console(json_output=json_output)
    with hub.session(console) as session:
        event = reviews.set_status(
            session,
            actor=hub.actor,
            record_id=record_id,
            status=ReviewStatus(status),
            note=note,
            now=hub.now(),
        )
    if json_output:
        console.emit_json(_event_document(event))
        return
    console.print(
        f"{event.record_type.value} {event.record_id}: {escape(event.change)}"
        + (" (note kept in its history)" if event.note else "")
    )


@review.command()
@click.argument("record_id", metavar="ID")
@click.argument("name", required=False)
@click.option("--nobody", is_flag=True, help="Leave the record unassigned.")
@click.option("--note", default=None, help="Kept in the record's history.")
@json_option
@pass_hub
def assign(
    hub: HubContext,
    *,
    record_id: str,
    name: str | None,
    nobody: bool,
    note: str | None,
    json_output: bool,
) -> None:
    """Assign indicator or campaign ID to coordinator NAME (or to nobody with --nobody)."""
    if (name is None) == (not nobody):
        raise click.UsageError("give either NAME or --nobody")
    console = Console(json_output=json_output)
    with hub.session(console) as session:
        event = reviews.assign(
            session, actor=hub.actor, record_id=record_id, assignee=name, note=note, now=hub.now()
        )
    if json_output:
        console.emit_json(_event_document(event))
    elif event.assignee is None:
        console.print(f"{event.record_type.value} {event.record_id}: unassigned")
    else:
        console.print(
            f"{event.record_type.value} {event.record_id}: assigned to {escape(event.assignee)}"
        )


@review.command()
@click.argument("record_id", metavar="ID")
@click.argument("text")
@json_option
@pass_hub
def note(hub: HubContext, record_id: str, text: str, json_output: bool) -> None:
    """Add a note to indicator or campaign ID's history."""
    console = Console(json_output=json_output)
    with hub.session(console) as session:
        event = reviews.add_note(
            session, actor=hub.actor, record_id=record_id, note=text, now=hub.now()
        )
    if json_output:
        console.emit_json(_event_document(event))
    else:
        console.print(f"{event.record_type.value} {event.record_id}: note added")


@review.command()
@click.argument("record_id", metavar="ID")
@json_option
@pass_hub
def history(hub: HubContext, record_id: str, json_output: bool) -> None:
    """Show the review history of indicator or campaign ID, oldest first."""
    console = Console(json_output=json_output)
    with hub.session(console) as session:
        state, events = reviews.history(session, record_id)
        _audit_read(hub, session, "review.history", f"{state.record_type.value}:{record_id}")
    if json_output:
        console.emit_json(
            {**_state_document(state), "events": [_event_document(e) for e in events]}
        )
        return
    console.print(
        f"{state.record_type.value} {state.record_id}: {state.status.value}, "
        f"assigned to {escape(state.assignee) if state.assignee else 'nobody'}"
    )
    if not events:
        console.print("no review events yet")
        return
    render.table(
        console,
        "history (oldest first)",
        ["at", "actor", "change", "assignee", "note"],
        [
            [format_time(e.at), escape(e.actor), escape(e.change), _text(e.assignee), _text(e.note)]
            for e in events
        ],
    )


def _state_document(state: RecordState) -> dict[str, Any]:
    return {
        "record_type": state.record_type.value,
        "record_id": state.record_id,
        "status": state.status.value,
        "assignee": state.assignee,
    }
