"""``sigshare keys register|show|trust|rotate|fetch``: sealed forum-secret distribution.

A member registers its public keys once (the forum's admin approves them after checking the
fingerprint out of band) and pins the custodian it accepts sealed forum secrets from; its
nightly ``sync`` (or ``keys fetch``) then installs each new forum secret next to the configured
one. A custodian, with its own configuration, runs ``keys rotate`` to seal a new secret to every
member with approved keys. :mod:`sigshare.client.sealed_keys` does the work; these commands
load the configuration, call it and print. Errors leave through :mod:`sigshare.client.cli.errors`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from sigshare.client.cli.errors import HANDLED, fail
from sigshare.client.cli.options import config_option, json_option
from sigshare.client.cli.sync import fetch_keys
from sigshare.client.config import (
    ensure_state_dir,
    hub_client,
    load_config,
)
from sigshare.client.console import Console
from sigshare.client.errors import HubUnavailableError
from sigshare.client.exit_codes import ExitCode
from sigshare.client.hub_types import KeyRegistration, KeyStatus
from sigshare.client.sealed_keys import (
    PinnedCustodian,
    approve_command,
    find_custodian,
    keys_dir,
    load_pinned_custodian,
    member_keys_exist,
    pin_custodian,
    register_member_keys,
    rotate_forum_secret,
)
from sigshare.client.secret_ring import SecretRing
from sigshare.client.state import InstalledEpoch, LocalState
from sigshare.client.sync import RunLock
from sigshare.keyring import load_member_keys
from sigshare.keyring.member_keys import member_keys_path

NO_KEYS = "none (run `sigshare keys register`)"
NO_CUSTODIAN = "none pinned (run `sigshare keys trust FINGERPRINT`)"


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _print_line(console: Console, text: str) -> None:
    """One line of plain text on stdout (names and fingerprints are never markup)."""
    if not console.json_output:
        console.out.print(text, markup=False, highlight=False)


@click.group()
def keys() -> None:
    """Sealed distribution of the forum secret: this member's keys, the custodian it trusts,
    and (for a custodian) key rotation. `sigshare keygen` still makes a secret file by hand."""


# ---------------------------------------------------------------------------------- register


def _status_word(registration: KeyRegistration) -> str:
    return "approved" if registration.approved else "pending"


@keys.command()
@click.option(
    "--new-keys",
    is_flag=True,
    help="Replace this member's keys with new ones (envelopes sealed to the old keys can no "
    "longer be opened; the admin must approve the new ones).",
)
@config_option
@json_option
def register(new_keys: bool, config_file: Path | None, json_output: bool) -> None:
    """Register this member's public keys with the hub, creating the keys first if needed.

    Prints the registration fingerprint and the command the forum's admin runs to approve it,
    after checking the fingerprint with you out of band. Running it again with the same keys
    changes nothing and says whether they are approved yet.
    """
    console = Console(json_output=json_output)
    try:
        config, _ = load_config(config_file)
        ensure_state_dir(config.state_dir)  # mode 0700, before the keys directory inside it
        directory = keys_dir(config.state_dir)
        with hub_client(config) as client:
            outcome = register_member_keys(client, directory, new_keys=new_keys)
    except HANDLED as error:
        fail(console, error)
    registration = outcome.registration
    status = _status_word(registration)
    command = (
        None if registration.approved else approve_command(outcome.name, outcome.keys.fingerprint)
    )
    if json_output:
        console.emit_json(
            {
                "name": outcome.name,
                "fingerprint": outcome.keys.fingerprint,
                "signing_fingerprint": outcome.keys.signing_fingerprint,
                "keys_file": str(member_keys_path(directory)),
                "created": outcome.created,
                "unchanged": outcome.unchanged,
                "status": status,
                "registered_at": _iso(registration.registered_at),
                "approved_at": _iso(registration.approved_at),
                "approve_command": command,
            }
        )
        return
    if outcome.created:
        _print_line(console, f"created member keys in {member_keys_path(directory)} (mode 0600)")
    fingerprint = outcome.keys.fingerprint
    if outcome.unchanged:
        state = "and approved" if registration.approved else "and awaiting approval"
        _print_line(
            console, f"the keys of {outcome.name} are registered already {state}: {fingerprint}"
        )
    else:
        _print_line(
            console, f"registered the keys of {outcome.name}: {fingerprint} (awaiting approval)"
        )
    if command is not None:
        _print_line(
            console,
            "check this fingerprint with the forum's admin out of band; the admin then runs:",
        )
        _print_line(console, f"  {command}")


# ---------------------------------------------------------------------------------- show


def _registration_document(registration: KeyRegistration | None) -> dict[str, Any] | None:
    if registration is None:
        return None
    return {
        "fingerprint": registration.fingerprint,
        "registered_at": _iso(registration.registered_at),
        "approved_at": _iso(registration.approved_at),
    }


def _registration_state(local: str | None, status: KeyStatus) -> str:
    """Where this member's local keys stand at the hub."""
    if status.approved is not None and status.approved.fingerprint == local:
        return "approved"
    if status.pending is not None and status.pending.fingerprint == local:
        return "pending"
    return "not_registered"


def _secret_rows(
    ring: SecretRing, epochs: list[InstalledEpoch], configured: Path
) -> list[dict[str, Any]]:
    by_key = {epoch.key_id: epoch for epoch in epochs}
    rows = []
    for key_id in ring.key_ids:
        path = ring.path_of(key_id)
        epoch = by_key.get(key_id)
        if epoch is not None:
            source = "envelope" if epoch.envelope_sha256 is not None else "generated"
        else:
            source = "configured" if path == configured else "file"
        rows.append(
            {
                "key_id": key_id,
                "file": str(path),
                "source": source,
                "custodian": epoch.custodian if epoch else None,
                "created_at": _iso(epoch.created_at) if epoch else None,
                "activate_at": _iso(epoch.activate_at) if epoch else None,
                "installed_at": _iso(epoch.installed_at) if epoch else None,
            }
        )
    return rows


@keys.command()
@config_option
@json_option
def show(config_file: Path | None, json_output: bool) -> None:
    """This member's keys and their registration, the pinned custodian, the installed forum
    secrets and the envelopes refused.

    When the hub cannot be reached, says so and shows what is known locally (exit 0).
    """
    console = Console(json_output=json_output)
    status: KeyStatus | None = None
    unreachable: str | None = None
    try:  # read-only: no lock, so it answers while a sync runs
        config, _ = load_config(config_file)
        directory = keys_dir(config.state_dir)
        member_keys = load_member_keys(directory) if member_keys_exist(directory) else None
        pin = load_pinned_custodian(directory)
        ring = SecretRing.load(config.secret_file, require_base=False)
        with LocalState.open(config.state_dir) as state:
            epochs = state.installed_epochs()
            refused = state.refused_envelopes()
        try:
            with hub_client(config) as client:
                status = client.key_status()
        except HubUnavailableError as error:
            unreachable = str(error)
    except HANDLED as error:
        fail(console, error)
    local = member_keys.fingerprint if member_keys else None
    secrets = _secret_rows(ring, epochs, config.secret_file)
    document = {
        "name": status.name if status else None,
        "hub_error": unreachable,
        "member_keys": None
        if member_keys is None
        else {
            "file": str(member_keys_path(directory)),
            "fingerprint": member_keys.fingerprint,
            "signing_fingerprint": member_keys.signing_fingerprint,
        },
        "registration": None if status is None else _registration_state(local, status),
        "approved": None if status is None else _registration_document(status.approved),
        "pending": None if status is None else _registration_document(status.pending),
        "envelopes_waiting": None if status is None else status.envelopes_waiting,
        "custodian": _pin_document(pin),
        "secrets": secrets,
        "refused": [
            {
                "key_id": r.key_id,
                "custodian": r.custodian,
                "reason": r.reason,
                "message": r.message,
                "at": r.at.isoformat(),
            }
            for r in refused
        ],
    }
    if json_output:
        console.emit_json(document)
        return
    if unreachable is not None:
        console.warn(f"the hub could not be reached, showing local keys only: {unreachable}")
    rows = [
        (
            "member keys",
            NO_KEYS
            if member_keys is None
            else f"{member_keys.fingerprint} (signing key {member_keys.signing_fingerprint})",
        )
    ]
    if status is not None:
        rows.append(("registration", _registration_line(local, status)))
    rows.append(("custodian", NO_CUSTODIAN if pin is None else _pin_line(pin)))
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        _print_line(console, f"{label.ljust(width)}  {value}")
    console.table(
        "forum secrets",
        ["key id", "source", "sealed", "activates", "custodian", "file"],
        [
            [
                escape(row["key_id"]),
                row["source"],
                (row["created_at"] or "-")[:19],
                (row["activate_at"] or ("at once" if row["created_at"] else "-"))[:19],
                escape(row["custodian"] or "-"),
                escape(row["file"]),
            ]
            for row in secrets
        ],
    )
    if refused:
        console.table(
            "refused envelopes",
            ["key id", "custodian", "reason", "at", "message"],
            [
                [
                    escape(r.key_id),
                    escape(r.custodian),
                    r.reason,
                    r.at.isoformat()[:19],
                    escape(r.message),
                ]
                for r in refused
            ],
        )


def _registration_line(local: str | None, status: KeyStatus) -> str:
    state = _registration_state(local, status)
    if state == "approved":
        return f"approved for {status.name}"
    if state == "pending":
        line = f"awaiting approval for {status.name}: {approve_command(status.name, str(local))}"
        if status.approved is not None:
            line += f"; the approved keys {status.approved.fingerprint} stay in use until then"
        return line
    approved = f"; the hub has {status.approved.fingerprint} approved" if status.approved else ""
    return f"not registered for {status.name}{approved}: run `sigshare keys register`"


def _pin_document(pin: PinnedCustodian | None) -> dict[str, str] | None:
    if pin is None:
        return None
    return {
        "name": pin.name,
        "fingerprint": pin.fingerprint,
        "pinned_at": pin.pinned_at.isoformat(),
    }


def _pin_line(pin: PinnedCustodian) -> str:
    return f"{pin.name} ({pin.fingerprint}), pinned {pin.pinned_at.isoformat()}"


# ---------------------------------------------------------------------------------- trust


@keys.command()
@click.argument("fingerprint")
@click.option("--replace", is_flag=True, help="Replace a different custodian pinned before.")
@config_option
@json_option
def trust(fingerprint: str, replace: bool, config_file: Path | None, json_output: bool) -> None:
    """Pin the custodian whose signing key has FINGERPRINT (SHA256:…, learnt out of band).

    Sealed forum secrets are installed only if signed with the pinned key.
    """
    console = Console(json_output=json_output)
    try:
        config, _ = load_config(config_file)
        with hub_client(config) as client:
            custodian = find_custodian(client.list_custodians(), fingerprint)
        ensure_state_dir(config.state_dir)  # mode 0700, before the keys directory inside it
        outcome = pin_custodian(
            keys_dir(config.state_dir), custodian, replace=replace, now=datetime.now(UTC)
        )
    except HANDLED as error:
        fail(console, error)
    if json_output:
        console.emit_json(
            {
                "name": outcome.pin.name,
                "fingerprint": outcome.pin.fingerprint,
                "file": str(outcome.path),
                "changed": outcome.changed,
                "replaced": _pin_document(outcome.replaced),
            }
        )
        return
    pin = outcome.pin
    if not outcome.changed:
        _print_line(console, f"custodian {pin.name} ({pin.fingerprint}) is pinned already")
        return
    replaced = (
        f" instead of {outcome.replaced.name} ({outcome.replaced.fingerprint})"
        if outcome.replaced
        else ""
    )
    _print_line(
        console,
        f"pinned custodian {pin.name} ({pin.fingerprint}){replaced}: sealed forum secrets are "
        "installed only if signed with its key",
    )


# ---------------------------------------------------------------------------------- rotate


def _activation(console: Console, value: str | None, now: datetime) -> datetime | None:
    """``--activate-at`` as an aware UTC datetime in whole seconds; a usage error (exit 2)
    for a time that is not ISO 8601, has no time zone, or is not in the future."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        console.abort(
            f"--activate-at {value}: not an ISO 8601 time; give one in UTC, e.g. "
            "2027-01-01T00:00:00Z",
            ExitCode.USAGE,
        )
    if moment.utcoffset() is None:
        console.abort(
            f"--activate-at {value}: no time zone; give the time in UTC, e.g. {value}Z",
            ExitCode.USAGE,
        )
    moment = moment.astimezone(UTC).replace(microsecond=0)
    if moment <= now:
        console.abort(
            f"--activate-at {value}: {moment.isoformat()} is in the past; give a future time, "
            "or leave the option out to announce none",
            ExitCode.USAGE,
        )
    return moment


@keys.command()
@click.option("--key-id", required=True, help="The new key epoch's id (e.g. k2027a).")
@click.option(
    "--activate-at",
    default=None,
    metavar="TIME",
    help="When the forum's operator plans to move the hub to it, ISO 8601 in UTC (e.g. "
    "2027-01-01T00:00:00Z); members see it in their envelope. Default: none announced.",
)
@click.option(
    "--accept-new-keys",
    "accept_new_keys",
    multiple=True,
    metavar="NAME",
    help="Seal to NAME although its keys changed since your last rotation (check the new "
    "fingerprint with NAME out of band first). Repeat for several members.",
)
@config_option
@json_option
def rotate(
    key_id: str,
    activate_at: str | None,
    accept_new_keys: tuple[str, ...],
    config_file: Path | None,
    json_output: bool,
) -> None:
    """Custodians: generate the forum secret of a new key epoch and seal it to every member.

    Seals and signs one envelope per member with approved keys, uploads them all (the hub
    accepts the whole set or nothing) and keeps the new secret beside the configured one, to
    seal it to members who join later. The forum's operator then moves the hub to the new key
    id; members install it on their next sync.
    """
    console = Console(json_output=json_output)
    now = datetime.now(UTC)
    activation = _activation(console, activate_at, now)
    try:
        config, _ = load_config(config_file)
        ensure_state_dir(config.state_dir)
        with RunLock(config.state_dir), LocalState.open(config.state_dir) as state:
            ring = SecretRing.load(config.secret_file, require_base=False)
            with hub_client(config) as client:
                report = rotate_forum_secret(
                    client,
                    state,
                    ring,
                    keys_dir(config.state_dir),
                    key_id=key_id,
                    activate_at=activation,
                    now=now,
                    accept_new_keys=accept_new_keys,
                )
    except HANDLED as error:
        fail(console, error)
    names = [recipient.name for recipient in report.recipients]
    first = [
        f"{r.name} ({r.keys.fingerprint}) is sealed to for the first time: check that "
        "fingerprint with it out of band"
        for r in report.first_sealed
    ]
    operator = f"sigshare-hub params epoch {report.key_id}"
    if json_output:
        console.emit_json(
            {
                "key_id": report.key_id,
                "custodian": report.custodian,
                "recipients": names,
                "unregistered": list(report.unregistered),
                "rotation_due": list(report.rotation_due),
                "first_sealed": {r.name: r.keys.fingerprint for r in report.first_sealed},
                "accepted_new_keys": {r.name: r.keys.fingerprint for r in report.accepted_changes},
                "bytes": report.total_bytes,
                "created_at": report.created_at.isoformat(),
                "activate_at": _iso(report.activate_at),
                "file": str(report.path),
                "operator_command": operator,
            }
        )
        return
    for reason in report.rotation_due:
        _print_line(console, f"rotation was due: {reason}")
    for name in report.unregistered:
        console.warn(escape(f"{name} has no approved keys: it receives nothing"))
    for line in first:
        console.warn(escape(line))
    when = (
        f"switch planned for {report.activate_at.isoformat()}"
        if report.activate_at
        else "no switch time announced"
    )
    _print_line(
        console,
        f"rotated the forum secret to key epoch {report.key_id} ({when}): sealed to "
        f"{len(names)} member{'s' if len(names) != 1 else ''} ({', '.join(names)}), "
        f"{report.total_bytes:,} bytes",
    )
    _print_line(console, f"kept the new forum secret in {report.path} (mode 0600)")
    at = f" at {report.activate_at.isoformat()}" if report.activate_at else ""
    _print_line(
        console,
        "next: members install it and send their sketches ahead under it on their next "
        f"`sigshare sync`; once `sigshare-hub keys status` shows they have, the forum's "
        f"operator runs `{operator}`{at}",
    )


keys.add_command(fetch_keys)
