"""What the two long-running commands (`serve` and `web`) share: logging set-up, the
`--port-file`/`--log-json`/`--log-level` options, the TLS flag rules and the certificate's
validity dates."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import click
from cryptography import x509

from sigshare.client.console import Console
from sigshare.client.exit_codes import ExitCode
from sigshare.hub.errors import InvalidArgumentError
from sigshare.hub.services.refusals import RefusalPolicy

_F = TypeVar("_F", bound=Callable[..., Any])
CERTIFICATE_WARNING_DAYS = 30
"""A serving certificate that expires sooner than this is started with a warning."""


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


_NATIVE_LINE = re.compile(
    r"(?P<severity>[IWEF])\d{4} [\d:.]+\s+\d+ (?P<source>[^\]\s]+)\] (?P<message>.*)"
)
"""A line of gRPC core's own log (abseil): ``I1203 08:54:59.876969  28496 file.cc:2563] …``"""
_HANDSHAKE_FAILED = re.compile(r"Handshake failed with (?:fatal )?error (?P<reason>.*)")
_NATIVE_LEVELS = {
    "I": logging.INFO,
    "W": logging.WARNING,
    "E": logging.ERROR,
    "F": logging.CRITICAL,
}


def _relog_native_line(log: logging.Logger, line: str) -> None:
    parsed = _NATIVE_LINE.fullmatch(line)
    if parsed is None:
        log.warning("%s", line)  # unexpected output on stderr: kept, as one record
        return
    message = parsed["message"]
    handshake = _HANDSHAKE_FAILED.match(message)
    if handshake is not None:
        log.warning("tls handshake refused reason=%s", handshake["reason"])
        return
    log.log(_NATIVE_LEVELS[parsed["severity"]], "%s (%s)", message, parsed["source"])


@contextmanager
def native_logs_as_records() -> Iterator[None]:
    """Route what gRPC's C core writes to file descriptor 2 through the ``sigshare`` logger.

    The core logs with its own formatter (a refused TLS handshake is an unstructured ``I…
    Handshake failed`` line) and Python cannot hook it, so while the block runs descriptor 2 is
    a pipe: a thread turns each line into a ``sigshare.hub.grpc`` record, a refused handshake
    into ``tls handshake refused reason=…``. Python's own ``sys.stderr`` (and the log handler)
    keep writing to the original destination. The core does not name the peer of a failed
    handshake, so neither does the record.
    """
    handler_streams = [
        handler
        for handler in logging.getLogger("sigshare").handlers
        if isinstance(handler, logging.StreamHandler)
    ]
    previous_stderr = sys.stderr
    previous_stderr.flush()
    original = os.fdopen(os.dup(2), "w", buffering=1, errors="backslashreplace")
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    sys.stderr = original
    for handler in handler_streams:
        handler.setStream(original)
    log = logging.getLogger("sigshare.hub.grpc")

    def pump() -> None:
        with open(read_end, encoding="utf-8", errors="replace") as lines:
            for line in lines:
                if line.strip():
                    _relog_native_line(log, line.rstrip("\n"))

    reader = threading.Thread(target=pump, name="sigshare-native-log", daemon=True)
    reader.start()
    try:
        yield
    finally:
        os.dup2(original.fileno(), 2)  # closes the pipe's last write end: the reader ends
        reader.join(timeout=5)
        sys.stderr = previous_stderr
        for handler in handler_streams:
            handler.setStream(previous_stderr)
        original.close()


def listen_options(default: str) -> Callable[[_F], _F]:
    """``--listen`` (defaulting to ``default``), ``--tls-cert`` and ``--tls-key``, as both server
    commands spell them."""

    def decorate(command: _F) -> _F:
        for option in reversed(
            (
                click.option(
                    "--listen",
                    default=default,
                    show_default=True,
                    metavar="HOST:PORT",
                    help="Address to listen on ([V6]:PORT for IPv6; port 0 picks a free one).",
                ),
                click.option(
                    "--tls-cert",
                    type=click.Path(dir_okay=False, path_type=Path),
                    help="PEM certificate.",
                ),
                click.option(
                    "--tls-key",
                    type=click.Path(dir_okay=False, path_type=Path),
                    help="PEM private key.",
                ),
            )
        ):
            command = option(command)
        return command

    return decorate


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


def refusal_options(command: _F) -> _F:
    """``--refusal-burst`` and ``--refusals-per-minute``: the per-source limit on refused
    credentials (``RefusalPolicy``), for both server commands."""
    defaults = RefusalPolicy()
    for option in reversed(
        (
            click.option(
                "--refusal-burst",
                type=click.IntRange(min=1),
                default=defaults.burst,
                show_default=True,
                help="Refused credentials a source address may send at once before it is "
                "refused unchecked.",
            ),
            click.option(
                "--refusals-per-minute",
                type=click.FloatRange(min=0, min_open=True),
                default=defaults.per_minute,
                show_default=True,
                help="How fast a source's allowance of refused credentials refills (raise both "
                "when every client arrives through one proxy address).",
            ),
        )
    ):
        command = option(command)
    return command


def refusal_policy(burst: int, per_minute: float) -> RefusalPolicy:
    return RefusalPolicy(burst=burst, per_minute=per_minute)


def check_tls_flags(
    console: Console, *, tls_cert: Path | None, tls_key: Path | None, insecure: bool
) -> None:
    """Refuse flag combinations that cannot mean anything (usage errors, exit 2)."""
    if (tls_cert is None) != (tls_key is None):
        console.abort("--tls-cert and --tls-key go together", ExitCode.USAGE)
    if insecure and tls_cert is not None:
        console.abort("--insecure and --tls-cert exclude each other", ExitCode.USAGE)


def _moment(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def check_certificate_dates(certificate: Path, *, now: datetime | None = None) -> str | None:
    """Refuse a serving certificate outside its validity dates; a warning if it ends soon.

    In a chain file the first certificate is the server's own (the one clients check dates
    of). Raises :class:`InvalidArgumentError` naming the file and the dates, so the command
    exits before anything listens; returns the warning text when the certificate expires
    within :data:`CERTIFICATE_WARNING_DAYS`, else ``None``.
    """
    try:
        pem = certificate.read_bytes()
    except OSError as error:
        raise InvalidArgumentError(f"cannot read TLS material: {error}") from None
    try:
        leaf = x509.load_pem_x509_certificates(pem)[0]
    except ValueError:
        raise InvalidArgumentError(f"{certificate} is not a PEM certificate") from None
    now = now or datetime.now(UTC)
    start, end = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    dates = f"valid from {_moment(start)} to {_moment(end)}"
    if now > end:
        raise InvalidArgumentError(
            f"the TLS certificate in {certificate} has expired ({dates}): renew it"
        )
    if now < start:
        raise InvalidArgumentError(
            f"the TLS certificate in {certificate} is not valid yet ({dates}): "
            "check the host's clock or the certificate"
        )
    left = end - now
    if left < timedelta(days=CERTIFICATE_WARNING_DAYS):
        return (
            f"the TLS certificate in {certificate} expires in {left / timedelta(days=1):.1f} "
            f"days, on {_moment(end)}: renew it"
        )
    return None
