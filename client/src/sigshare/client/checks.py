"""The checks of a member's set-up that ``sigshare init`` and ``sigshare doctor`` run.

Each check looks at one thing — a file and its mode, the TLS files, the hub's address, its TLS
handshake, the credential, the key epoch and what the hub publishes — and reports ``ok``,
``warn``, ``fail`` or ``skip`` (not checked, because a check it depends on failed), with what it
found and, unless ok, what to change. A failure carries the typed error behind it, so the command
turns it into an exit code through the one table of :mod:`sigshare.client.cli.errors`.
:func:`diagnose` runs them all against an existing configuration; ``init`` runs the file checks
before it writes one and reports the parameter checks as warnings. No check changes anything,
and none prints the credential or the secret.
"""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Final

from sigshare.client.config import (
    STATE_DIR_MODE,
    ClientConfig,
    ConfigError,
    config_path,
    hub_connection,
    load_config,
    read_credential,
    timeouts,
)
from sigshare.client.errors import (
    HubAuthError,
    HubClientError,
    HubTlsError,
    HubUnavailableError,
)
from sigshare.client.hub_client import HubClient, RetryPolicy, target_host
from sigshare.client.hub_types import HubParameters
from sigshare.client.secret_ring import SecretRing
from sigshare.client.sync import KeyEpochError
from sigshare.client.tls_files import (
    CertificateSummary,
    TlsWarning,
    read_ca_bundle,
    read_client_identity,
)
from sigshare.sketch.errors import KeyFileError
from sigshare.sketch.keys import load_secret_file
from sigshare.sketch.kinds import KIND_TYPES

CHECK_RETRY: Final = RetryPolicy(attempts=2)
"""One retry: enough to ride out a hub restarting, short enough to answer a typo quickly."""
CONNECT_TIMEOUT: Final = 10.0
"""Seconds the reachability check waits for a TCP connection."""


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    """Works, but not for long or less safely than it should."""
    FAIL = "fail"
    SKIP = "skip"
    """Not checked: a check it depends on failed."""


@dataclass(frozen=True, slots=True)
class Check:
    """The outcome of one check, as a line for a person and a record for ``--json``."""

    name: str
    status: Status
    detail: str
    fix: str | None = None
    """What to change; set unless the status is ok or skip."""
    error: Exception | None = None
    """For a failure, the typed error behind it: it decides the command's exit code."""

    def __str__(self) -> str:
        return self.detail if self.fix is None else f"{self.detail}; {self.fix}"


def first_failure(checks: list[Check]) -> Check | None:
    """The first failed check: its error decides the exit code of a command that ran them."""
    return next((check for check in checks if check.status is Status.FAIL), None)


def _ok(name: str, detail: str) -> Check:
    return Check(name, Status.OK, detail)


def _skip(name: str, reason: str) -> Check:
    return Check(name, Status.SKIP, f"not checked: {reason}")


def _warn(name: str, warnings: tuple[TlsWarning, ...]) -> Check:
    return Check(
        name,
        Status.WARN,
        "; ".join(w.problem for w in warnings),
        fix="; ".join(w.fix for w in warnings),
    )


# ---------------------------------------------------------------------------------- local files


def config_check(config_file: Path | None) -> tuple[Check, ClientConfig | None]:
    """The configuration file loads: readable, not writable by others, every setting valid."""
    name = "config"
    try:
        config, location = load_config(config_file)
    except ConfigError as error:
        location = config_path(config_file)
        fix = (
            "run `sigshare init` to write one, or point --config / $SIGSHARE_CONFIG at it"
            if not location.exists()
            else f"correct {location} as the message says, or rewrite it with "
            "`sigshare init --force`"
        )
        return Check(name, Status.FAIL, error.message, fix=fix, error=error), None
    return _ok(name, f"{location}: hub {config.hub}, {config.transport}"), config


def secret_file_check(config: ClientConfig) -> tuple[Check, str | None]:
    """The forum secret file loads (owner-only, well-formed); returns its key id."""
    name = "secret file"
    path = config.secret_file
    try:
        secret = load_secret_file(path)
    except KeyFileError as error:
        fix = (
            f"run: chmod 600 {path}"
            if _open_to_others(path, 0o077)
            else "install the forum secret file of the current key epoch (made by "
            "`sigshare keygen`, delivered out of band) there, mode 0600"
        )
        return Check(name, Status.FAIL, str(error), fix=fix, error=error), None
    return _ok(name, f"{path}: key id {secret.key_id}, {_mode(path)}"), secret.key_id


def credential_file_check(config: ClientConfig) -> tuple[Check, bool]:
    """The hub credential file is owner-only and holds one credential (never shown)."""
    name = "credential file"
    path = config.credential_file
    try:
        read_credential(config)
    except ConfigError as error:
        fix = (
            f"run: chmod 600 {path}"
            if _open_to_others(path, 0o077)
            else "put the credential the hub's operator issued you there, alone, mode 0600"
        )
        return Check(name, Status.FAIL, error.message, fix=fix, error=error), False
    return _ok(name, f"{path}: {_mode(path)}"), True


def state_dir_check(config: ClientConfig) -> Check:
    """The state directory is a private, writable directory (or will be created as one)."""
    name = "state dir"
    directory = config.state_dir
    if not directory.exists():
        return _ok(name, f"{directory}: not there yet; the first run creates it (mode 0700)")
    if not directory.is_dir():
        message = f"state directory {directory} exists and is not a directory"
        return Check(
            name,
            Status.FAIL,
            message,
            fix="set state_dir to a directory, or move the file away",
            error=ConfigError(message),
        )
    if not os.access(directory, os.R_OK | os.W_OK | os.X_OK):
        message = f"state directory {directory} is not writable by this user"
        return Check(
            name,
            Status.FAIL,
            message,
            fix="run the job as the directory's owner, or give it to that user",
            error=ConfigError(message),
        )
    mode = directory.stat().st_mode
    if mode & 0o077:
        return Check(
            name,
            Status.WARN,
            f"state directory {directory} has permissions {stat.filemode(mode)} and will hold "
            "rejected input rows",
            fix=f"run: chmod {STATE_DIR_MODE:o} {directory}",
        )
    return _ok(name, f"{directory}: {_mode(directory)}")


def tls_file_checks(config: ClientConfig, now: datetime | None = None) -> list[Check]:
    """The CA file and the client certificate with its key, as the connection will read them."""
    if config.insecure:
        return [_ok("tls files", "none: plaintext (insecure = true) to a loopback hub")]
    moment = now or datetime.now(UTC)
    checks: list[Check] = []
    name = "ca certificate"
    if config.ca_cert is None:
        checks.append(_ok(name, "none set: the hub's certificate is checked against gRPC's roots"))
    else:
        try:
            bundle = read_ca_bundle(config.ca_cert, now=moment)
        except HubTlsError as error:
            checks.append(_tls_failure(name, error))
        else:
            if bundle.warnings:
                checks.append(_warn(name, bundle.warnings))
            else:
                count = len(bundle.certificates)
                what = _describe(bundle.certificates[0]) if count == 1 else f"{count} certificates"
                checks.append(_ok(name, f"{bundle.path}: {what}"))
    name = "client certificate"
    if config.client_cert is None or config.client_key is None:
        checks.append(_ok(name, "none set: TLS without a client certificate"))
        return checks
    try:
        identity = read_client_identity(config.client_cert, config.client_key, now=moment)
    except HubTlsError as error:
        checks.append(_tls_failure(name, error))
        return checks
    if identity.warnings:
        checks.append(_warn(name, identity.warnings))
    else:
        checks.append(
            _ok(
                name,
                f"{identity.certificate_path}: {_describe(identity.certificate)}; "
                f"key {identity.key_path} matches",
            )
        )
    return checks


# ---------------------------------------------------------------------------------- the hub


def reachability_check(config: ClientConfig, timeout: float = CONNECT_TIMEOUT) -> Check:
    """A TCP connection to the hub's address opens (no TLS, no gRPC yet)."""
    name = "hub reachable"
    host = target_host(config.hub)
    port = int(config.hub.rpartition(":")[2])
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except socket.gaierror as error:
        problem = f"cannot resolve {host}: {error.strerror}"
    except TimeoutError:
        problem = f"no TCP connection to {config.hub} within {timeout:g} s"
    except OSError as error:
        problem = f"cannot connect to {config.hub}: {error.strerror or error}"
    else:
        return _ok(name, f"{config.hub} accepts TCP connections")
    return Check(
        name,
        Status.FAIL,
        problem,
        fix="check the hub address (hub = HOST:PORT), that the hub runs, and that no firewall "
        "blocks the port",
        error=HubUnavailableError(problem),
    )


@dataclass(frozen=True, slots=True)
class HubAnswer:
    """What the hub said to this member's connection: the connection and credential checks,
    and, when both passed, its published parameters."""

    checks: list[Check]
    parameters: HubParameters | None


def hub_answer_checks(
    config: ClientConfig,
    connect: Callable[[ClientConfig], HubClient] | None = None,
) -> HubAnswer:
    """Ask the hub for its parameters and this principal's name over the configured connection:
    the TLS handshake (with the client certificate, for mTLS) must be accepted, then the
    credential."""
    name = "connection"
    open_client = connect or _connect
    try:
        with open_client(config) as client:
            parameters = client.get_parameters()
            # The key service answers members and custodians alike with the caller's name.
            member = client.key_status().name
    except HubTlsError as error:
        return HubAnswer(
            [_tls_failure(name, error), _skip("credential", "no TLS connection to the hub")], None
        )
    except HubAuthError as error:
        refused = Check(
            "credential",
            Status.FAIL,
            error.message,
            fix=f"put the credential the hub's operator issued you in {config.credential_file}, "
            "and ask them whether it was revoked (with mTLS it counts only over the client "
            "certificate it is bound to)",
            error=error,
        )
        return HubAnswer([_ok(name, _accepted(config)), refused], None)
    except HubUnavailableError as error:
        unavailable = Check(
            name,
            Status.FAIL,
            error.message,
            fix="run `sigshare doctor` again once the hub is back; if this persists, show the "
            "message to the hub's operator",
            error=error,
        )
        return HubAnswer([unavailable, _skip("credential", "the hub did not answer")], None)
    except HubClientError as error:
        misunderstood = Check(
            name,
            Status.FAIL,
            error.message,
            fix="install the sigshare version the forum names, or show the message to the "
            "hub's operator",
            error=error,
        )
        return HubAnswer(
            [misunderstood, _skip("credential", "the hub's answer was not understood")], None
        )
    return HubAnswer(
        [
            _ok(name, _accepted(config)),
            _ok("credential", f"accepted: the hub knows this member as {member}"),
        ],
        parameters,
    )


def key_epoch_check(published: HubParameters, key_ids: Sequence[str]) -> Check:
    """A forum secret installed here (the configured file and those installed next to it from
    sealed envelopes, ``key_ids``) is for the key epoch the hub's parameters use."""
    name = "key epoch"
    installed = ", ".join(sorted(key_ids))
    epochs = {p.key_id for p in published.bloom.values()}
    epochs |= {p.key_id for p in published.minhash.values()}
    if not epochs:
        return _skip(name, "the hub publishes no parameters yet")
    if not epochs & set(key_ids):
        message = (
            f"the forum secret is for key id {installed}, the hub publishes parameters for "
            f"{', '.join(sorted(epochs))} only: sketches made with this secret would be refused"
        )
        return Check(
            name,
            Status.FAIL,
            message,
            fix="install the forum secret file of the hub's current key epoch",
            error=KeyEpochError(message),
        )
    by_name = {kind: p.key_id for kind, p in published.bloom.items()}
    by_name |= {family: p.key_id for family, p in published.minhash.items()}
    others = sorted(published_name for published_name, key in by_name.items() if key not in key_ids)
    if others:
        return Check(
            name,
            Status.WARN,
            f"the forum secret is for key id {installed}; the hub publishes {', '.join(others)} "
            "for another key id: those would be refused",
            fix="ask the forum's coordinator which key epoch is current",
        )
    upcoming = published.next_key_id
    if upcoming is not None and upcoming not in key_ids:
        return Check(
            name,
            Status.WARN,
            f"the forum is rotating to key epoch {upcoming}, whose secret is not installed here "
            "yet: sketches cannot be sent ahead, and they stop counting at the switch",
            fix="`sigshare keys show` says whether sealed key distribution is set up; "
            "`sigshare keys fetch` picks up the envelope",
        )
    current = ", ".join(sorted(epochs))
    ahead = f"; rotating to {upcoming}, installed" if upcoming is not None else ""
    return _ok(name, f"{current}, as the hub's parameters{ahead}")


def kinds_check(published: HubParameters) -> Check:
    """The hub publishes indicator kinds, and this client can sketch each of them."""
    name = "kinds"
    if not published.bloom:
        return Check(
            name,
            Status.WARN,
            "the hub publishes no indicator kinds: indicator files would be skipped",
            fix="ask the forum's coordinator to publish the kinds you share "
            "(`sigshare-hub params set KIND …`)",
        )
    unknown = sorted(set(published.bloom) - set(KIND_TYPES))
    listed = ", ".join(
        f"{kind} ({published.bloom[kind].key_id})" for kind in sorted(published.bloom)
    )
    if unknown:
        return Check(
            name,
            Status.WARN,
            f"the hub publishes {listed}; this client does not know {', '.join(unknown)}",
            fix="install the sigshare version the forum names to share those kinds",
        )
    return _ok(name, f"the hub publishes {listed}")


def prompt_family_check(published: HubParameters, family: str) -> Check:
    """The hub publishes the MinHash family the configuration sketches prompts for."""
    name = "prompt family"
    if family not in published.minhash:
        others = ", ".join(sorted(published.minhash)) or "none"
        return Check(
            name,
            Status.WARN,
            f"the hub publishes no MinHash family {family!r}: prompt clusters cannot be shared "
            f"until it does (it publishes: {others})",
            fix=f"ask the forum's coordinator to publish it (`sigshare-hub params set-minhash "
            f"{family} …`), or set prompt_family to a family the hub publishes",
        )
    return _ok(name, f"{family} ({published.minhash[family].key_id})")


# ---------------------------------------------------------------------------------- doctor


def diagnose(
    config_file: Path | None,
    *,
    now: datetime | None = None,
    connect: Callable[[ClientConfig], HubClient] | None = None,
) -> list[Check]:
    """Every check, in order, against the configuration at ``config_file`` (``None``: the
    default location). Checks that need a failed one are reported as skipped."""
    loaded, config = config_check(config_file)
    if config is None:
        return [loaded]
    secret, key_id = secret_file_check(config)
    credential, credential_readable = credential_file_check(config)
    checks = [loaded, secret, credential, state_dir_check(config)]
    tls_files = tls_file_checks(config, now)
    checks += tls_files
    hub_checks = (
        "hub reachable",
        "connection",
        "credential",
        "key epoch",
        "kinds",
        "prompt family",
    )
    if not credential_readable or any(c.status is Status.FAIL for c in tls_files):
        reason = (
            "the credential file is unusable"
            if not credential_readable
            else ("a TLS file is unusable")
        )
        return checks + [_skip(name, reason) for name in hub_checks]
    reachable = reachability_check(config)
    checks.append(reachable)
    if reachable.status is Status.FAIL:
        return checks + [_skip(name, "the hub is not reachable") for name in hub_checks[1:]]
    answer = hub_answer_checks(config, connect)
    checks += answer.checks
    published = answer.parameters
    if published is None:
        return checks + [_skip(name, "the hub did not answer") for name in hub_checks[3:]]
    checks.append(
        key_epoch_check(published, installed_key_ids(config, key_id))
        if key_id is not None
        else _skip("key epoch", "the forum secret file is unusable")
    )
    checks.append(kinds_check(published))
    checks.append(prompt_family_check(published, config.prompt_family))
    return checks


# ---------------------------------------------------------------------------------- helpers


def _connect(config: ClientConfig) -> HubClient:
    return HubClient(hub_connection(config), retry=CHECK_RETRY, timeouts=timeouts(config))


def _accepted(config: ClientConfig) -> str:
    if config.insecure:
        return "plaintext gRPC to a loopback hub"
    if config.client_cert is not None:
        return "TLS handshake accepted, with the client certificate"
    return "TLS handshake accepted: the hub's certificate is trusted"


def _tls_failure(name: str, error: HubTlsError) -> Check:
    return Check(name, Status.FAIL, error.problem, fix=error.fix, error=error)


def _describe(certificate: CertificateSummary) -> str:
    issuer = (
        "self-signed"
        if certificate.issuer == certificate.subject
        else f"issued by {certificate.issuer}"
    )
    return f"{certificate.subject}, {issuer}, valid until {certificate.not_after:%Y-%m-%d}"


def _mode(path: Path) -> str:
    return f"mode {stat.S_IMODE(path.stat().st_mode):04o}"


def _open_to_others(path: Path, mask: int) -> bool:
    try:
        return bool(path.stat().st_mode & mask)
    except OSError:
        return False


def installed_key_ids(config: ClientConfig, configured: str) -> tuple[str, ...]:
    """The key ids of every forum secret installed for ``config``: the configured file's
    (``configured``) and those installed next to it from sealed envelopes."""
    try:
        return SecretRing.load(config.secret_file).key_ids
    except KeyFileError:
        return (configured,)  # an unusable sibling is reported when the job loads the ring
