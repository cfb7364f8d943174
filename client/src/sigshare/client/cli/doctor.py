"""``sigshare doctor``: re-run every check of an existing configuration, one line per check."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from sigshare.client.checks import Check, Status, diagnose, first_failure
from sigshare.client.cli.errors import exit_code_for
from sigshare.client.cli.options import config_option, json_option
from sigshare.client.console import Console
from sigshare.client.exit_codes import ExitCode

_STATUS_STYLES = {
    Status.OK: "green",
    Status.WARN: "yellow",
    Status.FAIL: "red",
    Status.SKIP: "dim",
}


@click.command()
@config_option
@json_option
def doctor(*, config_file: Path | None, json_output: bool) -> None:
    """Check this member's set-up end to end and say what to fix.

    In order: the configuration file; the forum secret and credential files and their modes;
    the state directory; the TLS files (CA, client certificate and key); the hub's address; the
    TLS handshake (and client certificate); the credential; the key epoch against the hub's
    parameters; the kinds and the prompt family the hub publishes. One line per check — ok,
    warn, fail, or skip when a check it needs failed — and under each warn or fail, indented,
    what to do. Nothing is changed and nothing secret is printed.

    Exits 0 when no check failed, else with the code of the first failure: 3 configuration,
    file or TLS, 4 credential, 6 network.
    """
    console = Console(json_output=json_output)
    checks = diagnose(config_file)
    code = _exit_code(checks)
    if json_output:
        console.emit_json(
            {
                "checks": [
                    {"check": c.name, "status": str(c.status), "detail": c.detail, "fix": c.fix}
                    for c in checks
                ],
                "exit_code": int(code),
                "status": code.name.lower(),
            }
        )
    else:
        for check in checks:
            _render(console, check)
    if code is not ExitCode.OK:
        raise SystemExit(int(code))


def _exit_code(checks: list[Check]) -> ExitCode:
    """The exit code of the first failing check's error; OK when none failed."""
    failed = first_failure(checks)
    if failed is None:
        return ExitCode.OK
    found = exit_code_for(failed.error) if failed.error is not None else None
    return found if found is not None else ExitCode.FAILURE


def _render(console: Console, check: Check) -> None:
    style = _STATUS_STYLES[check.status]
    status = escape(str(check.status).ljust(4))
    console.print(f"[{style}]{status}[/{style}]  {escape(check.name)}: {escape(check.detail)}")
    if check.fix is not None:
        console.print(f"      {escape(check.fix)}")
