"""``sigshare-hub review``: the coordinators' review — overlap matrices, shared indicators and
campaigns, and the review workflow (status, assignee, notes, notes for members, history).

On the hub host it works on the database of ``--db`` and records changes as the CLI actor
(``cli:<user>``); with ``--hub`` it works over the hub's gRPC API as the coordinator or admin
whose credential ``--credential-file`` holds, and the hub records that principal's name
(:mod:`.review_desk`). Either way, every command prints the same text and JSON. What it shows is
what the console shows: opaque ids and aggregates, the names of the members behind an indicator
only where the kind's policy reveals them. Changes go to the record's history and the audit
log; reads are audited too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

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
)
from sigshare.hub.cli.review_desk import RemoteHub, ReviewContext
from sigshare.hub.domain import NAME_RULE, RecordType, ReviewEvent, ReviewStatus, is_valid_name
from sigshare.hub.errors import InvalidArgumentError
from sigshare.hub.listing import SORTS, RecordQuery
from sigshare.hub.services.coordinator_views import DEFAULT_FLAG_FACTOR, OverlapMatrix
from sigshare.hub.services.exports import campaign_record, indicator_record
from sigshare.hub.storage.reviews import RecordState

STATUSES = [status.value for status in ReviewStatus]
_Command = TypeVar("_Command", bound=Callable[..., Any])
# No existence checks by click: an unusable file is a settings error (exit 3) that names it.
_FILE = click.Path(path_type=Path)


@click.group()
@click.option(
    "--hub",
    "hub_target",
    metavar="HOST:PORT",
    default=None,
    help="Review on the hub at HOST:PORT over gRPC, as the coordinator or admin whose "
    "credential --credential-file holds (default: on the database of --db, as cli:USER).",
)
@click.option(
    "--credential-file",
    type=_FILE,
    metavar="FILE",
    default=None,
    help="With --hub: a coordinator's or admin's hub credential, alone in a mode-0600 file.",
)
@click.option(
    "--ca-cert",
    type=_FILE,
    metavar="FILE",
    default=None,
    help="With --hub: PEM roots for the hub (default: the public roots bundled with gRPC).",
)
@click.option(
    "--client-cert",
    type=_FILE,
    metavar="FILE",
    default=None,
    help="With --hub: client certificate chain (mTLS).",
)
@click.option(
    "--client-key", type=_FILE, metavar="FILE", default=None, help="With --hub: its private key."
)
@click.option("--insecure", is_flag=True, help="With --hub: plaintext, for a hub on loopback only.")
@click.pass_context
def review(
    ctx: click.Context,
    *,
    hub_target: str | None,
    credential_file: Path | None,
    ca_cert: Path | None,
    client_cert: Path | None,
    client_key: Path | None,
    insecure: bool,
) -> None:
    """Review overlaps, shared indicators and campaigns; move them through the workflow
    new → triaged → confirmed | dismissed, assign them, keep notes and tell their members.

    On the hub host, commands work on the database and are recorded as cli:USER. With --hub
    they work over the hub's gRPC API as the coordinator or admin whose credential
    --credential-file holds, and are recorded under that principal's name.
    """
    hub = ctx.find_object(HubContext)
    assert hub is not None, "the review group runs under the sigshare-hub group"
    settings = {
        "--credential-file": credential_file,
        "--ca-cert": ca_cert,
        "--client-cert": client_cert,
        "--client-key": client_key,
        "--insecure": insecure or None,
    }
    remote = None
    if hub_target is None:
        given = [option for option, value in settings.items() if value is not None]
        if given:
            raise click.UsageError(f"{', '.join(given)} only with --hub HOST:PORT")
    elif credential_file is None:
        raise click.UsageError(
            "--hub needs --credential-file: the credential of a coordinator or admin"
        )
    else:
        remote = RemoteHub(
            target=hub_target,
            credential_file=credential_file,
            ca_cert=ca_cert,
            client_cert=client_cert,
            client_key=client_key,
            insecure=insecure,
        )
    context = ReviewContext(hub, remote)
    ctx.obj = context
    ctx.call_on_close(context.close)


pass_review = click.make_pass_decorator(ReviewContext)


def _check_name(value: str | None, what: str) -> None:
    """Refuse a malformed kind or family before it is looked up or written to the audit log."""
    if value is not None and not is_valid_name(value):
        raise InvalidArgumentError(f"{what} {value!r} is not a valid name: {NAME_RULE}")


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
@pass_review
def overlaps(review_context: ReviewContext, kind: str | None, json_output: bool) -> None:
    """Estimated numbers of items each pair of members shares, per indicator kind.

    The diagonal is each member's own estimated count. Estimates come from the members' current
    Bloom filters (Swamidass–Baldi / Papapetrou), with their standard errors in --json.
    """
    console = Console(json_output=json_output)
    with review_context.desk(console) as desk:
        _check_name(kind, "kind")
        matrices = desk.overlaps(kind)
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
@pass_review
def submissions(
    review_context: ReviewContext,
    kind: str | None,
    flagged: bool,
    flag_factor: float,
    json_output: bool,
) -> None:
    """Every member's current submissions: declared count, distinct tokens asked about, and
    flags for jumps that look like probing (claiming values to query them)."""
    console = Console(json_output=json_output)
    with review_context.desk(console) as desk:
        _check_name(kind, "kind")
        views = desk.submissions(kind, flag_factor)
    if flagged:
        views = [view for view in views if view.flags]
    if json_output:
        console.emit_json(
            {
                "submissions": [
                    {
                        "member": view.member,
                        "kind": view.kind,
                        "submission": view.submission_id,
                        "created_at": view.created_at.isoformat(),
                        "declared_count": view.declared_count,
                        "tokens_asked": view.tokens_asked,
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
                _text(view.kind),
                format_time(view.created_at),
                f"{view.declared_count:,}",
                f"{view.tokens_asked:,}",
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
@pass_review
def indicators(
    review_context: ReviewContext,
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
    with review_context.desk(console) as desk:
        query = _query(RecordType.INDICATOR, scope=kind, **listing)
        found = desk.indicators(query)
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
@pass_review
def campaigns(
    review_context: ReviewContext,
    /,
    *,
    family: str | None,
    json_output: bool,
    **listing: Any,
) -> None:
    """List active campaigns: members involved, similarity, volume, categories, first and
    last seen, review state.

    Campaigns are recomputed first for families whose submissions changed.
    """
    console = Console(json_output=json_output)
    with review_context.desk(console) as desk:
        query = _query(RecordType.CAMPAIGN, scope=family, **listing)
        found = desk.campaigns(query)
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
            "first seen",
            "last seen",
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
                format_time(c.first_seen),
                format_time(c.last_seen),
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
        "member_note": event.member_note,
    }


@review.command("set-status")
@click.argument("record_id", metavar="ID")
@click.argument("status", type=click.Choice(STATUSES))
@click.option("--note", default=None, help="Why: kept in the record's history.")
@click.option(
    "--member-note",
    metavar="TEXT",
    default=None,
    help="A note for the members behind the record (an indicator's reporters, a campaign's "
    "members): they receive it with the new status in their next pull.",
)
@json_option
@pass_review
def set_status(
    review_context: ReviewContext,
    *,
    record_id: str,
    status: str,
    note: str | None,
    member_note: str | None,
    json_output: bool,
) -> None:
    """Move indicator or campaign ID to STATUS.

    Allowed: new → triaged | dismissed, triaged → confirmed | dismissed, and confirmed or
    dismissed back to triaged to reopen a decision. Anything else is refused (exit 5).

    The members behind the record see its status in their next pull, with --member-note's
    text; a status change without --member-note leaves them no note.
    """
    console = Console(json_output=json_output)
    with review_context.desk(console) as desk:
        event = desk.set_status(record_id, ReviewStatus(status), note=note, member_note=member_note)
    if json_output:
        console.emit_json(_event_document(event))
        return
    notes = []
    if event.note:
        notes.append("note kept in its history")
    if event.member_note:
        notes.append("its members receive the note for members with their next pull")
    console.print(
        f"{event.record_type.value} {event.record_id}: {escape(event.change)}"
        + (f" ({'; '.join(notes)})" if notes else "")
    )


@review.command()
@click.argument("record_id", metavar="ID")
@click.argument("name", required=False)
@click.option("--nobody", is_flag=True, help="Leave the record unassigned.")
@click.option("--note", default=None, help="Kept in the record's history.")
@json_option
@pass_review
def assign(
    review_context: ReviewContext,
    *,
    record_id: str,
    name: str | None,
    nobody: bool,
    note: str | None,
    json_output: bool,
) -> None:
    """Assign indicator or campaign ID to coordinator NAME (or to nobody with --nobody).

    NAME must be a coordinator or admin who is not revoked; anyone else is refused (exit 5).
    """
    if (name is None) == (not nobody):
        raise click.UsageError("give either NAME or --nobody")
    console = Console(json_output=json_output)
    with review_context.desk(console) as desk:
        event = desk.assign(record_id, name, note=note)
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
@click.option(
    "--for-members",
    is_flag=True,
    help="A note for the members behind the record instead: they receive it with their next "
    "pull (it replaces the record's note for members).",
)
@json_option
@pass_review
def note(
    review_context: ReviewContext, record_id: str, text: str, for_members: bool, json_output: bool
) -> None:
    """Add a note to indicator or campaign ID's history (or, --for-members, one for its
    members)."""
    console = Console(json_output=json_output)
    with review_context.desk(console) as desk:
        event = desk.add_note(record_id, text, for_members=for_members)
    if json_output:
        console.emit_json(_event_document(event))
    elif event.member_note is not None:
        console.print(
            f"{event.record_type.value} {event.record_id}: note for members added (its members "
            "receive it with their next pull)"
        )
    else:
        console.print(f"{event.record_type.value} {event.record_id}: note added")


@review.command()
@click.argument("record_id", metavar="ID")
@json_option
@pass_review
def history(review_context: ReviewContext, record_id: str, json_output: bool) -> None:
    """Show the review history of indicator or campaign ID, oldest first, and the note its
    members receive."""
    console = Console(json_output=json_output)
    with review_context.desk(console) as desk:
        state, events = desk.history(record_id)
    if json_output:
        console.emit_json(
            {**_state_document(state), "events": [_event_document(e) for e in events]}
        )
        return
    console.print(
        f"{state.record_type.value} {state.record_id}: {state.status.value}, "
        f"assigned to {escape(state.assignee) if state.assignee else 'nobody'}"
    )
    if state.member_note is not None:
        console.print(f"note for members: {escape(state.member_note)}")
    if not events:
        console.print("no review events yet")
        return
    # The column appears once members were sent a note: most records never have one.
    told = any(e.member_note is not None for e in events)
    render.table(
        console,
        "history (oldest first)",
        ["at", "actor", "change", "assignee", "note", *(["note for members"] if told else [])],
        [
            [
                format_time(e.at),
                escape(e.actor),
                escape(e.change),
                _text(e.assignee),
                _text(e.note),
                *([_text(e.member_note)] if told else []),
            ]
            for e in events
        ],
    )


def _state_document(state: RecordState) -> dict[str, Any]:
    return {
        "record_type": state.record_type.value,
        "record_id": state.record_id,
        "status": state.status.value,
        "assignee": state.assignee,
        "member_note": state.member_note,
    }
