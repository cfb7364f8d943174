"""``sigshare init``: check a member's settings and files, then write its configuration."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from sigshare.client.checks import (
    Status,
    first_failure,
    hub_answer_checks,
    installed_key_ids,
    key_epoch_check,
    kinds_check,
    prompt_family_check,
    state_dir_check,
)
from sigshare.client.cli.errors import HANDLED, fail
from sigshare.client.cli.options import config_option, json_option
from sigshare.client.config import (
    ClientConfig,
    ConfigError,
    config_path,
    default_state_dir,
    ensure_state_dir,
    hub_client,
    read_credential,
    write_config,
)
from sigshare.client.console import Console
from sigshare.client.errors import HubTlsError
from sigshare.client.exit_codes import ExitCode
from sigshare.client.hub_types import CustodianInfo, HubParameters
from sigshare.client.sealed_keys import PinOutcome, find_custodian, keys_dir, pin_custodian
from sigshare.client.tls_files import read_tls_material
from sigshare.sketch.errors import KeyFileError
from sigshare.sketch.keys import load_secret_file

# No existence or type checks by click: a bad file is a configuration error (exit 3) reported by
# the checks below, not a usage error.
_FILE = click.Path(path_type=Path)


def _absolute(path: Path) -> Path:
    return Path(os.path.abspath(path.expanduser()))


def _optional_absolute(path: Path | None) -> Path | None:
    return None if path is None else _absolute(path)


@click.command()
@click.option("--hub", required=True, metavar="HOST:PORT", help="The hub (IPv6: [ADDR]:PORT).")
@click.option(
    "--credential-file",
    required=True,
    type=_FILE,
    metavar="FILE",
    help="This member's hub credential, alone in a mode-0600 file.",
)
@click.option(
    "--secret-file",
    required=True,
    type=_FILE,
    metavar="FILE",
    help="The forum secret file from `sigshare keygen` (mode 0600).",
)
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path),
    default=None,
    metavar="DIR",
    help="Local job state, created with mode 0700 "
    "(default: $XDG_STATE_HOME/sigshare, i.e. ~/.local/state/sigshare).",
)
@click.option(
    "--ca-cert",
    type=_FILE,
    metavar="FILE",
    default=None,
    help="PEM roots for the hub (default: the public roots bundled with gRPC).",
)
@click.option(
    "--insecure", is_flag=True, help="Plaintext, for a hub on loopback only (tests, local demo)."
)
@click.option(
    "--client-cert",
    type=_FILE,
    metavar="FILE",
    default=None,
    help="Client certificate chain (mTLS).",
)
@click.option(
    "--client-key", type=_FILE, metavar="FILE", default=None, help="Its private key (mTLS)."
)
@click.option(
    "--trust-custodian",
    metavar="FINGERPRINT",
    default=None,
    help="Pin the custodian whose signing key has this fingerprint (as `sigshare keys trust`): "
    "sealed forum secrets are installed only if signed with it.",
)
@config_option
@click.option("--force", is_flag=True, help="Replace an existing configuration file.")
@click.option(
    "--check/--no-check",
    default=True,
    show_default=True,
    help="Connect to the hub and fetch its parameters to prove the settings work.",
)
@json_option
def init(
    *,
    hub: str,
    credential_file: Path,
    secret_file: Path,
    state_dir: Path | None,
    ca_cert: Path | None,
    insecure: bool,
    client_cert: Path | None,
    client_key: Path | None,
    trust_custodian: str | None,
    config_file: Path | None,
    force: bool,
    check: bool,
    json_output: bool,
) -> None:
    """Write this member's configuration after checking every file it names.

    The forum secret must load and the credential file must be readable by its owner only; the
    CA file must hold certificates (and no private key), the client certificate must be valid
    now and made for client authentication, and the client key must be its key. The state
    directory is created (mode 0700) and the configuration written with absolute paths (mode
    0600). Unless --no-check, the hub is asked for its published parameters first, so a wrong
    address, certificate or credential fails here and nothing is written. With
    --trust-custodian the custodian is looked up on the hub and pinned in the state directory.
    Neither the credential nor the secret is ever printed. `sigshare doctor` re-runs these
    checks later.
    """
    console = Console(json_output=json_output)
    if insecure and ca_cert is not None:
        console.abort(
            "--ca-cert and --insecure conflict: TLS or plaintext, not both", ExitCode.USAGE
        )
    if insecure and (client_cert is not None or client_key is not None):
        console.abort(
            "--client-cert/--client-key and --insecure conflict: mTLS needs TLS", ExitCode.USAGE
        )
    if (client_cert is None) != (client_key is None):
        console.abort("--client-cert and --client-key go together (mTLS)", ExitCode.USAGE)
    if trust_custodian is not None and not check:
        console.abort(
            "--trust-custodian looks the custodian up on the hub: it cannot go with --no-check",
            ExitCode.USAGE,
        )

    target = config_path(config_file)
    if target.exists() and not force:
        console.abort(f"{target} already exists; use --force to replace it", ExitCode.CONFIG)
    try:
        config = ClientConfig(
            hub=hub,
            credential_file=_absolute(credential_file),
            secret_file=_absolute(secret_file),
            state_dir=_absolute(state_dir) if state_dir is not None else default_state_dir(),
            ca_cert=_optional_absolute(ca_cert),
            client_cert=_optional_absolute(client_cert),
            client_key=_optional_absolute(client_key),
            insecure=insecure,
        )
        key_id = load_secret_file(config.secret_file).key_id
        read_credential(config)
        tls = read_tls_material(config.ca_cert, config.client_cert, config.client_key)
    except (ConfigError, KeyFileError, HubTlsError) as error:
        fail(console, error)
    state = state_dir_check(config)
    if state.error is not None:
        fail(console, state.error)

    warnings = [str(warning) for warning in tls.warnings]
    warnings += [str(state)] if state.status is Status.WARN else []
    published = _fetch_parameters(console, config) if check else None
    if published is not None:
        warnings += _parameter_warnings(published, config, key_id)
    custodian = _find_custodian(console, config, trust_custodian) if trust_custodian else None

    try:
        created = ensure_state_dir(config.state_dir)
        pinned = (
            None
            if custodian is None
            else pin_custodian(
                keys_dir(config.state_dir), custodian, replace=False, now=datetime.now(UTC)
            )
        )
        written = write_config(target, config, force=force)
    except HANDLED as error:
        fail(console, error)

    for warning in warnings:
        console.warn(escape(warning))
    if json_output:
        console.emit_json(
            _document(
                written,
                config=config,
                key_id=key_id,
                created=created,
                published=published,
                pinned=pinned,
                warnings=warnings,
            )
        )
    else:
        _render(
            console,
            written,
            config=config,
            key_id=key_id,
            created=created,
            published=published,
            pinned=pinned,
        )


def _find_custodian(console: Console, config: ClientConfig, fingerprint: str) -> CustodianInfo:
    """The custodian to pin, as `sigshare keys trust` finds it."""
    try:
        with hub_client(config) as client:
            return find_custodian(client.list_custodians(), fingerprint)
    except HANDLED as error:
        fail(console, error)


def _fetch_parameters(console: Console, config: ClientConfig) -> HubParameters:
    answer = hub_answer_checks(config)
    failed = first_failure(answer.checks)
    if failed is not None and failed.error is not None:
        fail(console, failed.error)
    assert answer.parameters is not None, "no failure, so the hub answered"
    return answer.parameters


def _parameter_warnings(published: HubParameters, config: ClientConfig, key_id: str) -> list[str]:
    checks = (
        key_epoch_check(published, installed_key_ids(config, key_id)),
        kinds_check(published),
        prompt_family_check(published, config.prompt_family),
    )
    return [str(c) for c in checks if c.status in (Status.WARN, Status.FAIL)]


def _published_lists(published: HubParameters) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    kinds = [
        {"kind": name, "key_id": published.bloom[name].key_id} for name in sorted(published.bloom)
    ]
    families = [
        {"family": name, "key_id": published.minhash[name].key_id}
        for name in sorted(published.minhash)
    ]
    return kinds, families


def _document(
    written: Path,
    *,
    config: ClientConfig,
    key_id: str,
    created: bool,
    published: HubParameters | None,
    pinned: PinOutcome | None,
    warnings: list[str],
) -> dict[str, Any]:
    checked: dict[str, Any] | None = None
    if published is not None:
        kinds, families = _published_lists(published)
        checked = {"kinds": kinds, "families": families}
    document: dict[str, Any] = {
        "config": str(written),
        "hub": config.hub,
        "transport": config.transport,
        "credential_file": str(config.credential_file),
        "secret_file": str(config.secret_file),
        "key_id": key_id,
        "state_dir": str(config.state_dir),
        "state_dir_created": created,
        "rejects_file": str(config.rejects_path),
        "checked": published is not None,
        "hub_parameters": checked,
        "warnings": warnings,
    }
    if pinned is not None:  # only with --trust-custodian
        document["custodian"] = {
            "name": pinned.pin.name,
            "fingerprint": pinned.pin.fingerprint,
            "file": str(pinned.path),
        }
    return document


def _render(
    console: Console,
    written: Path,
    *,
    config: ClientConfig,
    key_id: str,
    created: bool,
    published: HubParameters | None,
    pinned: PinOutcome | None,
) -> None:
    console.print(f"wrote [bold]{escape(str(written))}[/bold] (mode 0600)")
    rows = [
        ("hub", f"{config.hub} ({config.transport})"),
        ("credential", f"{config.credential_file} (mode 0600)"),
        ("forum secret", f"{config.secret_file} (key id {key_id})"),
        (
            "state dir",
            f"{config.state_dir} ({'created, mode 0700' if created else 'already there'})",
        ),
    ]
    if published is None:
        rows.append(("hub check", "skipped (--no-check)"))
    else:
        kinds, families = _published_lists(published)
        listed_kinds = ", ".join(f"{k['kind']} ({k['key_id']})" for k in kinds) or "none"
        listed_families = ", ".join(f"{f['family']} ({f['key_id']})" for f in families) or "none"
        rows.append(("hub check", "ok"))
        rows.append(("  kinds", listed_kinds))
        rows.append(("  families", listed_families))
    if pinned is not None:
        rows.append(("custodian", f"{pinned.pin.name} ({pinned.pin.fingerprint}), pinned"))
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        console.print(f"  {label.ljust(width)}  {escape(value)}")
