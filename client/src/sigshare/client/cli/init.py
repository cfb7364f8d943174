"""``sigshare init``: check a member's settings and files, then write its configuration."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from sigshare.client.cli.errors import fail
from sigshare.client.cli.options import config_option, json_option
from sigshare.client.config import (
    STATE_DIR_MODE,
    ClientConfig,
    ConfigError,
    config_path,
    default_state_dir,
    ensure_state_dir,
    hub_connection,
    read_credential,
    timeouts,
    write_config,
)
from sigshare.client.console import Console
from sigshare.client.errors import HubClientError
from sigshare.client.exit_codes import ExitCode
from sigshare.client.hub_client import HubClient, RetryPolicy
from sigshare.client.hub_types import HubParameters
from sigshare.sketch.errors import KeyFileError
from sigshare.sketch.keys import load_secret_file

CHECK_RETRY = RetryPolicy(attempts=2)
"""One retry: enough to ride out a hub restarting, short enough to answer a typo quickly."""

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
    config_file: Path | None,
    force: bool,
    check: bool,
    json_output: bool,
) -> None:
    """Write this member's configuration after checking every file it names.

    The forum secret must load and the credential file must be readable by its owner only;
    the state directory is created (mode 0700) and the configuration written with absolute
    paths (mode 0600). Unless --no-check, the hub is asked for its published parameters first,
    so a wrong address, certificate or credential fails here and nothing is written. Neither
    the credential nor the secret is ever printed.
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
        _check_tls_files(config)
        if config.state_dir.exists() and not config.state_dir.is_dir():
            raise ConfigError(f"state directory {config.state_dir} exists and is not a directory")
    except (ConfigError, KeyFileError) as error:
        fail(console, error)

    warnings = _permission_warnings(config)
    published = _fetch_parameters(console, config) if check else None
    if published is not None:
        warnings += _parameter_warnings(published, config, key_id)

    try:
        created = ensure_state_dir(config.state_dir)
        written = write_config(target, config, force=force)
    except ConfigError as error:
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
        )


def _check_tls_files(config: ClientConfig) -> None:
    for what, path in (
        ("CA certificate", config.ca_cert),
        ("client certificate", config.client_cert),
        ("client key", config.client_key),
    ):
        if path is None:
            continue
        if not path.is_file():
            raise ConfigError(f"{what} {path}: no such file")
        if not os.access(path, os.R_OK):
            raise ConfigError(f"{what} {path}: permission denied")


def _permission_warnings(config: ClientConfig) -> list[str]:
    warnings: list[str] = []
    if config.client_key is not None:
        mode = config.client_key.stat().st_mode
        if mode & 0o077:
            warnings.append(
                f"client key {config.client_key} has permissions {stat.filemode(mode)}; "
                f"run: chmod 600 {config.client_key}"
            )
    if config.state_dir.is_dir():
        mode = config.state_dir.stat().st_mode
        if mode & 0o077:
            warnings.append(
                f"state directory {config.state_dir} has permissions {stat.filemode(mode)} and "
                f"will hold rejected input rows; run: chmod {STATE_DIR_MODE:o} {config.state_dir}"
            )
    return warnings


def _fetch_parameters(console: Console, config: ClientConfig) -> HubParameters:
    try:
        with HubClient(
            hub_connection(config), retry=CHECK_RETRY, timeouts=timeouts(config)
        ) as client:
            return client.get_parameters()
    except (ConfigError, HubClientError) as error:
        fail(console, error)


def _parameter_warnings(published: HubParameters, config: ClientConfig, key_id: str) -> list[str]:
    warnings: list[str] = []
    epochs = {p.key_id for p in published.bloom.values()}
    epochs |= {p.key_id for p in published.minhash.values()}
    if epochs and key_id not in epochs:
        warnings.append(
            f"the forum secret is for key id {key_id}, the hub publishes parameters for "
            f"{', '.join(sorted(epochs))} only: sketches made with this secret would be refused"
        )
    if config.prompt_family not in published.minhash:
        warnings.append(
            f"the hub publishes no MinHash family {config.prompt_family!r}: prompt clusters "
            "cannot be shared until it does"
        )
    return warnings


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
    warnings: list[str],
) -> dict[str, Any]:
    checked: dict[str, Any] | None = None
    if published is not None:
        kinds, families = _published_lists(published)
        checked = {"kinds": kinds, "families": families}
    return {
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


def _render(
    console: Console,
    written: Path,
    *,
    config: ClientConfig,
    key_id: str,
    created: bool,
    published: HubParameters | None,
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
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        console.print(f"  {label.ljust(width)}  {escape(value)}")
