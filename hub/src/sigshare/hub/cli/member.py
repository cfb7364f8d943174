"""``sigshare-hub member``: register principals, show their credential once, list, rotate and
revoke."""

from __future__ import annotations

import click
from rich.text import Text

from sigshare.client.console import Console
from sigshare.hub.cli import render
from sigshare.hub.cli.context import HubContext, format_time, json_option, pass_hub
from sigshare.hub.cli.params import forum_size_warning
from sigshare.hub.domain import Principal, Role
from sigshare.hub.services import parameters, principals


@click.group()
def member() -> None:
    """Register, list, rotate and revoke members, coordinators and admins."""


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
@json_option
@pass_hub
def revoke(hub: HubContext, name: str, json_output: bool) -> None:
    """Revoke NAME's credential; the hub refuses it from this moment on.

    A member's active submissions are withdrawn at the same moment: no resolution, overlap,
    campaign or count includes them any more. Shared indicators it already confirmed stay.
    """
    console = Console(json_output=json_output)
    with hub.session(console) as session:
        principal = principals.revoke_principal(session, actor=hub.actor, name=name, now=hub.now())
    if json_output:
        console.emit_json(_document(principal))
    else:
        console.print(
            f"revoked {principal.role.value} {principal.name} "
            f"at {format_time(principal.revoked_at)}: its credential is refused from then on"
        )


def _document(principal: Principal) -> dict[str, str | None]:
    return {
        "name": principal.name,
        "role": principal.role.value,
        "created_at": principal.created_at.isoformat(),
        "revoked_at": None if principal.revoked_at is None else principal.revoked_at.isoformat(),
    }
