"""``sigshare-hub serve``: run the gRPC hub until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import threading
from contextlib import nullcontext
from pathlib import Path

import click

from sigshare.client.console import Console
from sigshare.client.exit_codes import ExitCode
from sigshare.hub.cli.context import HubContext, pass_hub
from sigshare.hub.cli.server_options import (
    check_certificate_dates,
    check_tls_flags,
    configure_logging,
    listen_options,
    native_logs_as_records,
    refusal_options,
    refusal_policy,
    runtime_options,
)
from sigshare.hub.rpc.app import build_hub
from sigshare.hub.rpc.client_identity import ClientIdentityPolicy
from sigshare.hub.rpc.server import TlsConfig, parse_listen
from sigshare.hub.services import payloads as payloads_module

DEFAULT_LISTEN = "127.0.0.1:7443"


@click.command()
@listen_options(DEFAULT_LISTEN)
@click.option(
    "--client-ca",
    type=click.Path(dir_okay=False, path_type=Path),
    help="PEM CA bundle: require client certificates signed by it (mTLS).",
)
@click.option(
    "--client-identity-map",
    type=click.Path(dir_okay=False, path_type=Path),
    help="JSON object from client certificate identities (subject:…, cn:…, dns:…, uri:…) to "
    "principal names. Without it, with --client-ca, a certificate's CN or a DNS/URI SAN must "
    "equal the name of the principal whose credential it carries.",
)
@click.option(
    "--insecure",
    is_flag=True,
    help="Plaintext gRPC. Refused unless --listen is a loopback address.",
)
@click.option("--workers", default=16, show_default=True, help="Concurrent RPCs.")
@click.option(
    "--index-cache-mib",
    type=click.IntRange(min=0),
    default=1024,
    show_default=True,
    help="Memory for cached membership indexes (per kind: m × ⌈members/8⌉ bytes, rounded up "
    "to 1, 2, 4 or a multiple of 8); 0 rebuilds the index for every request.",
)
@refusal_options
@runtime_options
@pass_hub
def serve(
    hub: HubContext,
    *,
    listen: str,
    tls_cert: Path | None,
    tls_key: Path | None,
    client_ca: Path | None,
    client_identity_map: Path | None,
    insecure: bool,
    workers: int,
    index_cache_mib: int,
    refusal_burst: int,
    refusals_per_minute: float,
    port_file: Path | None,
    log_json: bool,
    log_level: str,
) -> None:
    """Serve the member, review and admin APIs (plus gRPC health and reflection).

    TLS is required unless --insecure is given on a loopback address. Every RPC needs a bearer
    credential from `sigshare-hub member add`. SIGTERM stops gracefully: health turns
    NOT_SERVING, new calls are refused and running calls get 20 seconds to finish.
    """
    console = Console()
    check_tls_flags(console, tls_cert=tls_cert, tls_key=tls_key, insecure=insecure)
    if client_ca is not None and tls_cert is None:
        console.abort("--client-ca (mTLS) needs --tls-cert and --tls-key", ExitCode.USAGE)
    if client_identity_map is not None and client_ca is None:
        console.abort("--client-identity-map needs --client-ca (mTLS)", ExitCode.USAGE)
    configure_logging(log_json, log_level)
    log = logging.getLogger("sigshare.hub")
    tls = None
    if tls_cert is not None and tls_key is not None:
        tls = TlsConfig(certificate=tls_cert, private_key=tls_key, client_ca=client_ca)
    # gRPC's core logs refused TLS handshakes itself; with --log-json they become records too.
    with native_logs_as_records() if log_json else nullcontext():
        with hub.guard(console):
            address = parse_listen(listen)
            # With mTLS a certificate is always bound to a principal: by default by its names.
            client_identities = None
            if client_ca is not None:
                client_identities = (
                    ClientIdentityPolicy()
                    if client_identity_map is None
                    else ClientIdentityPolicy.from_file(client_identity_map)
                )
            if tls is not None and (expiring := check_certificate_dates(tls.certificate)):
                log.warning(expiring)
            server = build_hub(
                hub.engine(),
                address,
                tls=tls,
                insecure=insecure,
                max_workers=workers,
                index_cache_bytes=index_cache_mib << 20,
                client_identities=client_identities,
                refusal_policy=refusal_policy(refusal_burst, refusals_per_minute),
            )
        transport = "plaintext (loopback only)" if tls is None else ("mTLS" if client_ca else "TLS")
        payloads = payloads_module.location(hub.engine())
        stop_sweeping = threading.Event()
        payloads_module.start_sweeper(hub.engine(), stop_sweeping)

        def announce() -> None:
            log.info(
                "serving address=%s port=%d transport=%s database=%s payloads=%s",
                address.host,
                server.port,
                transport,
                hub.database,
                payloads,
            )
            if port_file is not None:
                port_file.write_text(f"{server.port}\n")

        try:
            server.serve_until_signalled(on_serving=announce)
        finally:
            stop_sweeping.set()
    log.info("stopped")
