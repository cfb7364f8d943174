"""What the two long-running commands (`serve` and `web`) share: logging set-up, the
`--port-file`/`--log-json`/`--log-level` options and the TLS flag rules."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from sigshare.client.console import Console
from sigshare.client.exit_codes import ExitCode

_F = TypeVar("_F", bound=Callable[..., Any])


class JsonFormatter(logging.Formatter):
    """One JSON object per line: what log pipelines index without parsing prose."""

    def format(self, record: logging.LogRecord) -> str:
        document = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document)


def configure_logging(json_logs: bool, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if json_logs:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger("sigshare")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def runtime_options(command: _F) -> _F:
    """``--port-file``, ``--log-json`` and ``--log-level``, as both server commands spell them."""
    for option in reversed(
        (
            click.option(
                "--port-file",
                type=click.Path(dir_okay=False, path_type=Path),
                help="Write the bound port here once serving (useful with port 0).",
            ),
            click.option("--log-json", is_flag=True, help="Log one JSON object per line."),
            click.option(
                "--log-level",
                default="info",
                show_default=True,
                type=click.Choice(["debug", "info", "warning", "error"]),
            ),
        )
    ):
        command = option(command)
    return command


def check_tls_flags(
    console: Console, *, tls_cert: Path | None, tls_key: Path | None, insecure: bool
) -> None:
    """Refuse flag combinations that cannot mean anything (usage errors, exit 2)."""
    if (tls_cert is None) != (tls_key is None):
        console.abort("--tls-cert and --tls-key go together", ExitCode.USAGE)
    if insecure and tls_cert is not None:
        console.abort("--insecure and --tls-cert exclude each other", ExitCode.USAGE)
