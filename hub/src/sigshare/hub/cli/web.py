"""``sigshare-hub web``: serve the coordinators' web console until SIGTERM or SIGINT.

The same transport policy as ``serve``: TLS unless ``--insecure`` on a loopback address. Under
TLS the session cookies are ``Secure`` with the ``__Host-`` prefix; over loopback plaintext they
cannot be (browsers drop ``Secure`` cookies sent over http), which is why plaintext stays local.
"""

from __future__ import annotations

import logging
import signal
import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import click
import uvicorn

from sigshare.client.console import Console
from sigshare.hub.cli.context import HubContext, pass_hub
from sigshare.hub.cli.server_options import (
    check_certificate_dates,
    check_tls_flags,
    configure_logging,
    listen_options,
    refusal_options,
    refusal_policy,
    runtime_options,
)
from sigshare.hub.errors import InvalidArgumentError
from sigshare.hub.rpc.server import ListenAddress, parse_listen
from sigshare.hub.web import create_app

DEFAULT_LISTEN = "127.0.0.1:8443"
SHUTDOWN_GRACE_SECONDS = 20


def _check_tls(certificate: Path, private_key: Path) -> None:
    """Load the pair once here, so a bad file is named before anything listens."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(certfile=certificate, keyfile=private_key)
    except FileNotFoundError as error:
        raise InvalidArgumentError(f"cannot read TLS material: {error}") from None
    except (ssl.SSLError, OSError) as error:
        raise InvalidArgumentError(
            f"{certificate} and {private_key} are not a matching PEM certificate and unencrypted "
            f"private key ({error.__class__.__name__})"
        ) from None


def _bind(address: ListenAddress) -> socket.socket:
    """A listening TCP socket.

    Created with protocol ``IPPROTO_TCP`` (not ``create_server``'s 0): asyncio sets
    ``TCP_NODELAY`` on accepted connections only for such sockets, and without it Nagle's
    algorithm holds each keep-alive response for the client's delayed ACK (~40 ms a page).
    """
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((address.host, address.port))
        listener.listen(socket.SOMAXCONN)
    except OSError as error:
        listener.close()
        raise InvalidArgumentError(
            f"cannot listen on {address.target}: {error.strerror or error}"
        ) from None
    return listener


class _Server(uvicorn.Server):
    """uvicorn's server, calling ``on_serving`` once it accepts connections."""

    def __init__(self, config: uvicorn.Config, on_serving: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_serving = on_serving

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self._on_serving()


@click.command()
@listen_options(DEFAULT_LISTEN)
@click.option(
    "--insecure",
    is_flag=True,
    help="Plaintext HTTP. Refused unless --listen is a loopback address.",
)
@click.option(
    "--session-hours",
    default=12.0,
    show_default=True,
    type=click.FloatRange(min=0.1, max=168),
    help="How long a sign-in lasts.",
)
@refusal_options
@runtime_options
@pass_hub
def web(
    hub: HubContext,
    *,
    listen: str,
    tls_cert: Path | None,
    tls_key: Path | None,
    insecure: bool,
    session_hours: float,
    refusal_burst: int,
    refusals_per_minute: float,
    port_file: Path | None,
    log_json: bool,
    log_level: str,
) -> None:
    """Serve the coordinators' web console (sign in with a coordinator or admin credential).

    TLS is required unless --insecure is given on a loopback address. SIGTERM stops gracefully:
    the listener closes and running requests get 20 seconds to finish.
    """
    console = Console()
    check_tls_flags(console, tls_cert=tls_cert, tls_key=tls_key, insecure=insecure)
    configure_logging(log_json, log_level)
    log = logging.getLogger("sigshare.hub.web")
    with hub.guard(console):
        address = parse_listen(listen)
        if tls_cert is None and not insecure:
            raise InvalidArgumentError(
                "TLS is required: pass --tls-cert and --tls-key (or --insecure on loopback)"
            )
        if tls_cert is None and not address.is_loopback:
            raise InvalidArgumentError(
                f"refusing plaintext on {address.host}: --insecure is allowed only on loopback"
            )
        if tls_cert is not None and tls_key is not None:
            _check_tls(tls_cert, tls_key)
            if expiring := check_certificate_dates(tls_cert):
                log.warning(expiring)
        app = create_app(
            hub.engine(),
            secure_cookies=tls_cert is not None,
            session_hours=session_hours,
            refusal_policy=refusal_policy(refusal_burst, refusals_per_minute),
        )
        listener = _bind(address)
    port = listener.getsockname()[1]
    _route_uvicorn_logs()
    config = uvicorn.Config(
        app,
        ssl_certfile=tls_cert,
        ssl_keyfile=tls_key,
        log_config=None,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
        lifespan="off",
    )
    transport = "plaintext (loopback only)" if tls_cert is None else "TLS"

    def announce() -> None:
        log.info(
            "serving web console address=%s port=%d transport=%s database=%s",
            address.host,
            port,
            transport,
            hub.database,
        )
        if port_file is not None:
            port_file.write_text(f"{port}\n")

    server = _Server(config, on_serving=announce)
    # uvicorn re-raises the stop signal once it has shut down, to the handler it found in
    # place; make that a no-op so a graceful stop ends the command with status 0.
    previous = {sig: signal.signal(sig, _ignore) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run(sockets=[listener])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        listener.close()
    log.info("stopped")


def _ignore(signum: int, frame: FrameType | None) -> None:
    """Stand-in handler while uvicorn runs (it installs its own and restores this one)."""


def _route_uvicorn_logs() -> None:
    """uvicorn's logs (startup, access lines, errors) through the hub's log handler."""
    handlers = logging.getLogger("sigshare").handlers
    level = logging.getLogger("sigshare").level
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers if name == "uvicorn" else []
        logger.setLevel(level)
        logger.propagate = name != "uvicorn"
