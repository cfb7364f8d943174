"""``sigshare-hub member``: register principals, show their credential once, list, rotate and
revoke them, and review and approve the public keys they register for the forum secret."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click
from rich.markup import escape
from rich.text import Text

from sigshare.client.console import Console
from sigshare.hub.cli import render
from sigshare.hub.cli.context import HubContext, format_time, json_option, pass_hub
from sigshare.hub.cli.params import forum_size_warning
from sigshare.hub.domain import KeyRegistration, KeyState, Principal, Role
from sigshare.hub.services import keyring, parameters, principals
from sigshare.hub.services.keyring import MemberKeysView
from sigshare.keyring import signing_fingerprint

ROTATE_HINT = (
    "a custodian runs `sigshare keys rotate --key-id NEW_ID`, then an admin "
    "`sigshare-hub params epoch NEW_ID`"
)
"""Who rotates the forum secret and how, wherever the CLI says a rotation is due."""


@click.group()
def member() -> None:
    """Register, list, rotate and revoke members, coordinators, admins and custodians; review
    and approve their keys."""


@member.command()
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice([role.value for role in Role]),
    default=Role.MEMBER.value,
    show_default=True,
    help="What the principal may do.",
)
@json_option
@pass_hub
def add(hub: HubContext, name: str, role: str, json_output: bool) -> None:
    """Register NAME and print its bearer credential — the only time it is ever shown.

    The hub stores a hash of it only. Plain output is the credential alone on stdout, so
    `CRED=$(sigshare-hub member add acme)` captures it; hand it to its owner securely.
    """
    console = Console(json_output=json_output)
    with hub.session(console) as session:
        principal, credential = principals.add_principal(
            session, actor=hub.actor, name=name, role=Role(role), now=hub.now()
        )
        # In the same transaction: a failure here must not leave a principal whose
        # credential was never shown.
        oversized = (
            [
                rate
                for rate in parameters.false_shared_rates(session, hub.now())
                if rate.over_forum_size
            ]
            if principal.role is Role.MEMBER
            else []
        )
    # Shown only after the commit, so it is never printed for a principal that was not stored.
    if json_output:
        console.emit_json(
            {
                "name": principal.name,
                "role": principal.role.value,
                "created_at": principal.created_at.isoformat(),
                "credential": credential.token,
                "warnings": [forum_size_warning(rate) for rate in oversized],
            }
        )
        return
    console.print(Text(credential.token))
    for rate in oversized:
        console.warn(forum_size_warning(rate))
    console.err.print(
        Text(
            f"registered {principal.role.value} {principal.name}; its credential (above) is "
            "shown this once: the hub keeps only a hash of it"
        )
    )


@member.command("list")
@json_option
@pass_hub
def list_(hub: HubContext, json_output: bool) -> None:
    """List every principal, revoked ones included (never credentials or their hashes)."""
    console = Console(json_output=json_output)
    with hub.session(console) as session:
        everyone = principals.list_principals(session)
    if json_output:
        console.emit_json({"principals": [_document(principal) for principal in everyone]})
    elif not everyone:
        console.print("no principals yet: add one with `sigshare-hub member add NAME`")
    else:
        render.table(
            console,
            "principals",
            ["name", "role", "created", "revoked"],
            [
                [p.name, p.role.value, format_time(p.created_at), format_time(p.revoked_at)]
                for p in everyone
            ],
        )


@member.command()
@click.argument("name")
@json_option
@pass_hub
def rotate(hub: HubContext, name: str, json_output: bool) -> None:
    """Give NAME a new bearer credential and print it — the only time it is ever shown.

    The old credential is refused from this moment on and NAME's console sessions end. Plain
    output is the credential alone on stdout, like `member add`. A revoked principal cannot
    be rotated: register a new one.
    """
    console = Console(json_output=json_output)
    with hub.session(console) as session:
        principal, credential = principals.rotate_principal(
            session, actor=hub.actor, name=name, now=hub.now()
        )
    # Shown only after the commit, so it is never printed for a credential that was not stored.
    if json_output:
        console.emit_json({**_document(principal), "credential": credential.token})
        return
    console.print(Text(credential.token))
    console.err.print(
        Text(
            f"rotated the credential of {principal.role.value} {principal.name}: the old one is "
            "refused from now on; the new one (above) is shown this once"
        )
    )


@member.command()
@click.argument("name")
@click.option(
    "--rotate",
    is_flag=True,
    help="Record that the forum secret must be rotated: NAME held it, and a rotation seals a "
    "new one to the remaining members only.",
)
@json_option
@pass_hub
def revoke(hub: HubContext, name: str, rotate: bool, json_output: bool) -> None:
    """Revoke NAME's credential; the hub refuses it from this moment on.

    A member's active submissions are withdrawn at the same moment: no resolution, overlap,
    campaign or count includes them any more. Shared indicators it already confirmed stay.
    A revoked member receives no envelope of any later rotation.
    """
    console = Console(json_output=json_output)
    now = hub.now()
    with hub.session(console) as session:
        principal = principals.revoke_principal(session, actor=hub.actor, name=name, now=now)
        request = (
            keyring.request_rotation(
                session,
                actor=hub.actor,
                reason=f"{principal.role.value} {principal.name} revoked",
                now=now,
            )
            if rotate
            else None
        )
    if json_output:
        console.emit_json(
            {**_document(principal), "rotation_due": None if request is None else request.reason}
        )
        return
    console.print(
        f"revoked {principal.role.value} {principal.name} "
        f"at {format_time(principal.revoked_at)}: its credential is refused from then on"
    )
    if request is not None:
        console.print(f"rotation due ({request.reason}): {ROTATE_HINT}")


@member.command("keys")
@click.argument("name")
@json_option
@pass_hub
def keys(hub: HubContext, name: str, json_output: bool) -> None:
    """Show the public keys NAME registered: each registration's fingerprint and state.

    Approve a pending registration with `member approve-keys NAME FINGERPRINT` once NAME has
    read you the same fingerprint out of band. For a member, also shows whether it fetched its
    envelope of the latest rotation.
    """
    console = Console(json_output=json_output)
    with hub.session(console) as session:
        view = keyring.member_keys(session, name=name)
    principal = view.principal
    if json_output:
        console.emit_json(_keys_document(view))
        return
    who = f"{principal.role.value} {principal.name}"
    if principal.role not in keyring.KEY_HOLDERS:
        console.print(f"{who} holds no keys: only members and custodians register keys")
    elif not view.registrations:
        console.print(f"{who} has registered no keys: it runs `sigshare keys register`")
    else:
        render.table(
            console,
            f"keys of {who}",
            ["fingerprint", "state", "registered", "approved", "by", "retired"],
            [
                [
                    r.fingerprint,
                    r.state.value,
                    format_time(r.registered_at),
                    format_time(r.approved_at),
                    escape(r.approved_by or "-"),
                    format_time(r.retired_at),
                ]
                for r in view.registrations
            ],
        )
    approved = [r for r in view.registrations if r.state is KeyState.APPROVED]
    if principal.role is Role.CUSTODIAN and approved:
        fingerprint = signing_fingerprint(approved[0].signing_public)
        console.print(
            f"members pin {principal.name}'s signing key {fingerprint} "
            f"(`sigshare keys trust {fingerprint}`)"
        )
    if principal.role is Role.MEMBER and view.latest_rotation is not None:
        console.print(_latest_rotation_line(view))


@member.command("approve-keys")
@click.argument("name")
@click.argument("fingerprint")
@json_option
@pass_hub
def approve_keys(hub: HubContext, name: str, fingerprint: str, json_output: bool) -> None:
    """Approve NAME's key registration FINGERPRINT: only approved keys receive envelopes.

    Check FINGERPRINT with NAME out of band first (NAME's `sigshare keys status` shows it). The
    keys NAME used before, if any, are retired.
    """
    console = Console(json_output=json_output)
    with hub.session(console) as session:
        approval = keyring.approve_keys(
            session, actor=hub.actor, name=name, fingerprint=fingerprint, now=hub.now()
        )
    principal, registration = approval.principal, approval.registration
    if json_output:
        console.emit_json(
            {
                "name": principal.name,
                "role": principal.role.value,
                **_registration_document(registration),
                "changed": approval.changed,
                "retired": None if approval.retired is None else approval.retired.fingerprint,
                "latest_rotation": (
                    None if approval.latest_rotation is None else approval.latest_rotation.key_id
                ),
                "in_latest_rotation": approval.in_latest_rotation,
            }
        )
        return
    who = f"{principal.role.value} {principal.name}"
    if not approval.changed:
        console.print(
            f"keys {registration.fingerprint} of {who} were approved already "
            f"(at {format_time(registration.approved_at)}): nothing changed"
        )
        return
    replaced = (
        "" if approval.retired is None else f"; the keys {approval.retired.fingerprint} are retired"
    )
    console.print(f"approved keys {registration.fingerprint} of {who}{replaced}")
    if principal.role is Role.MEMBER and not approval.in_latest_rotation:
        console.print(
            f"{principal.name} receives the forum secret with the next rotation: "
            "a custodian runs `sigshare keys rotate --key-id NEW_ID`"
        )
    if principal.role is Role.CUSTODIAN:
        signing = signing_fingerprint(registration.signing_public)
        console.print(
            f"members verify {principal.name}'s envelopes with signing key {signing}: each "
            f"pins it with `sigshare keys trust {signing}`"
        )


def _latest_rotation_line(view: MemberKeysView) -> str:
    latest, pickup = view.latest_rotation, view.latest_pickup
    assert latest is not None
    if pickup is None:
        return (
            f"latest rotation {latest.key_id}: {view.principal.name} was not a recipient; "
            "the next rotation seals the forum secret to it"
        )
    if pickup.first_fetched_at is None:
        return f"latest rotation {latest.key_id}: envelope not fetched yet"
    return (
        f"latest rotation {latest.key_id}: envelope fetched at "
        f"{format_time(pickup.first_fetched_at)} (last {format_time(pickup.last_fetched_at)})"
    )


def _registration_document(registration: KeyRegistration) -> dict[str, Any]:
    return {
        "fingerprint": registration.fingerprint,
        "signing_fingerprint": signing_fingerprint(registration.signing_public),
        "state": registration.state.value,
        "registered_at": registration.registered_at.isoformat(),
        "approved_at": _iso(registration.approved_at),
        "approved_by": registration.approved_by,
        "retired_at": _iso(registration.retired_at),
    }


def _keys_document(view: MemberKeysView) -> dict[str, Any]:
    document: dict[str, Any] = {
        **_document(view.principal),
        "registrations": [_registration_document(r) for r in view.registrations],
    }
    if view.principal.role is Role.MEMBER:
        latest, pickup = view.latest_rotation, view.latest_pickup
        document["latest_rotation"] = (
            None
            if latest is None
            else {
                "key_id": latest.key_id,
                "recipient": pickup is not None,
                "first_fetched_at": None if pickup is None else _iso(pickup.first_fetched_at),
                "last_fetched_at": None if pickup is None else _iso(pickup.last_fetched_at),
            }
        )
    return document


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _document(principal: Principal) -> dict[str, str | None]:
    return {
        "name": principal.name,
        "role": principal.role.value,
        "created_at": principal.created_at.isoformat(),
        "revoked_at": None if principal.revoked_at is None else principal.revoked_at.isoformat(),
    }
