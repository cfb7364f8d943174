"""``sigshare-hub keys``: where the forum secret's sealed distribution stands — whether a
rotation is due, each rotation, and which recipients fetched their envelope."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click
from rich.markup import escape

from sigshare.client.console import Console
from sigshare.hub.cli import render
from sigshare.hub.cli.context import HubContext, format_time, json_option, pass_hub
from sigshare.hub.cli.errors import abort, exit_code_for
from sigshare.hub.cli.member import ROTATE_HINT
from sigshare.hub.domain import EnvelopePickup, Rotation, RotationRequest
from sigshare.hub.errors import NotFoundError
from sigshare.hub.services import epochs, keyring
from sigshare.hub.services.keyring import RotationPickups, RotationStatus

NOT_YET = "not yet"


@click.group()
def keys() -> None:
    """The forum secret's sealed distribution: due rotations and who fetched their envelope."""


@keys.command()
@click.option(
    "--key-id",
    default=None,
    help="Show this rotation's recipients: when each first and last fetched its envelope.",
)
@json_option
@pass_hub
def status(hub: HubContext, key_id: str | None, json_output: bool) -> None:
    """Show whether a rotation is due, every rotation (newest first) with how many recipients
    fetched their envelope, and the members the latest rotation did not reach."""
    console = Console(json_output=json_output)
    if key_id is None:
        with hub.session(console) as session:
            overview = keyring.rotation_status(session, now=hub.now())
        _show_overview(console, overview)
        return
    with hub.session(console) as session:
        pickups = keyring.rotation_pickups(session, key_id=key_id)
        # Before the switch: what each member has sent ahead under the new epoch.
        ahead = (
            epochs.sent_ahead(session, key_id=key_id)
            if epochs.next_key_id(session) == key_id
            else None
        )
    if pickups is None:
        missing = NotFoundError("rotation to key id", key_id)
        abort(console, f"{missing}: `sigshare-hub keys status` lists them", exit_code_for(missing))
    _show_pickups(console, pickups, ahead)


def _show_overview(console: Console, overview: RotationStatus) -> None:
    if console.json_output:
        console.emit_json(
            {
                "rotation_due": [_request_document(request) for request in overview.due],
                "rotations": [
                    {**_rotation_document(p.rotation), "fetched": p.fetched}
                    for p in overview.rotations
                ],
                "uncovered": overview.uncovered,
            }
        )
        return
    if overview.due:
        reasons = "; ".join(
            f"{r.reason} (recorded {format_time(r.requested_at)} by {r.requested_by})"
            for r in overview.due
        )
        console.print(f"rotation due: {escape(reasons)}")
        console.print(ROTATE_HINT)
    else:
        console.print("no rotation due")
    if not overview.rotations:
        console.print(
            "no rotation yet: a custodian distributes a new forum secret with "
            "`sigshare keys rotate --key-id ID`"
        )
        return
    render.table(
        console,
        "rotations, newest first",
        ["key id", "custodian", "created", "activates", "recipients", "fetched"],
        [
            [
                p.rotation.key_id,
                p.rotation.custodian,
                format_time(p.rotation.created_at),
                format_time(p.rotation.activate_at),
                str(p.rotation.recipients),
                str(p.fetched),
            ]
            for p in overview.rotations
        ],
    )
    if overview.uncovered:
        console.print(
            f"not reached by the latest rotation ({overview.rotations[0].rotation.key_id}): "
            f"{', '.join(overview.uncovered)}; the next rotation seals the forum secret to them"
        )


def _show_pickups(
    console: Console, found: RotationPickups, ahead: dict[str, list[str]] | None
) -> None:
    """``ahead``: what each member sent ahead, while the forum is rotating to this key id."""
    rotation = found.rotation
    if console.json_output:
        console.emit_json(
            {
                **_rotation_document(rotation),
                "fetched": found.fetched,
                "envelopes": [
                    {
                        **_pickup_document(pickup),
                        **(
                            {"sent_ahead": ahead.get(pickup.recipient, [])}
                            if ahead is not None
                            else {}
                        ),
                    }
                    for pickup in found.pickups
                ],
            }
        )
        return
    columns = ["recipient", "keys", "first fetched", "last fetched"]
    if ahead is not None:
        columns.append("sent ahead")
    render.table(
        console,
        f"envelopes of {rotation.key_id} ({rotation.custodian}, "
        f"{format_time(rotation.created_at)}): {found.fetched} of {rotation.recipients} fetched",
        columns,
        [
            [
                pickup.recipient,
                pickup.recipient_fingerprint,
                _fetched(pickup.first_fetched_at),
                _fetched(pickup.last_fetched_at),
                *([", ".join(ahead.get(pickup.recipient, [])) or "-"] if ahead is not None else []),
            ]
            for pickup in found.pickups
        ],
    )


def _fetched(moment: datetime | None) -> str:
    return NOT_YET if moment is None else format_time(moment)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _request_document(request: RotationRequest) -> dict[str, Any]:
    return {
        "reason": request.reason,
        "requested_by": request.requested_by,
        "requested_at": request.requested_at.isoformat(),
    }


def _rotation_document(rotation: Rotation) -> dict[str, Any]:
    return {
        "key_id": rotation.key_id,
        "custodian": rotation.custodian,
        "created_at": rotation.created_at.isoformat(),
        "activate_at": _iso(rotation.activate_at),
        "recipients": rotation.recipients,
        "total_bytes": rotation.total_bytes,
    }


def _pickup_document(pickup: EnvelopePickup) -> dict[str, Any]:
    return {
        "recipient": pickup.recipient,
        "fingerprint": pickup.recipient_fingerprint,
        "byte_size": pickup.byte_size,
        "first_fetched_at": _iso(pickup.first_fetched_at),
        "last_fetched_at": _iso(pickup.last_fetched_at),
    }
