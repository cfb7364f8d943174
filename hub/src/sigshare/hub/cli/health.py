"""``sigshare-hub health``: ask a running hub's gRPC health service whether it serves.

For probes that cannot speak gRPC over TLS themselves (Kubernetes' built-in gRPC probe is
plaintext only; systemd, scripts): exit 0 when the hub answers SERVING, 1 when it answers
anything else or cannot be reached in time. The health service needs no credential.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import grpc
from grpc_health.v1 import health_pb2

from sigshare.hub.errors import InvalidArgumentError
from sigshare.hub.rpc.server import parse_listen

_READ_LIMIT = 1 << 20


def _read(path: Path | None) -> bytes | None:
    if path is None:
        return None
    with path.open("rb") as handle:
        return handle.read(_READ_LIMIT)


@click.command()
@click.option(
    "--addr",
    "address",
    default="127.0.0.1:7443",
    show_default=True,
    metavar="HOST:PORT",
    help="The hub's gRPC address.",
)
@click.option(
    "--ca-cert",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="PEM CA bundle that signed the hub's certificate (default: the system's).",
)
@click.option(
    "--server-name",
    help="Name to check the hub's certificate against (default: the host of --addr).",
)
@click.option(
    "--tls-cert",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="PEM client certificate, when the hub requires one (mTLS).",
)
@click.option(
    "--tls-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="PEM private key of --tls-cert.",
)
@click.option("--insecure", is_flag=True, help="Plaintext gRPC (loopback addresses only).")
@click.option(
    "--service",
    default="",
    help="Service name to ask about (default: the server as a whole).",
)
@click.option("--timeout", type=float, default=5.0, show_default=True, help="Seconds to wait.")
def health(
    *,
    address: str,
    ca_cert: Path | None,
    server_name: str | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    insecure: bool,
    service: str,
    timeout: float,
) -> None:
    """Exit 0 if the hub at --addr answers SERVING to a gRPC health check, else 1."""
    try:
        listen = parse_listen(address)
    except InvalidArgumentError as error:
        raise click.UsageError(str(error)) from None
    if insecure and not listen.is_loopback:
        raise click.UsageError("--insecure is only allowed for a loopback address")
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    if insecure and (ca_cert or tls_cert):
        raise click.UsageError("--insecure takes no TLS options")
    target = listen.target
    if insecure:
        channel = grpc.insecure_channel(target)
    else:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=_read(ca_cert),
            private_key=_read(tls_key),
            certificate_chain=_read(tls_cert),
        )
        options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
        channel = grpc.secure_channel(target, credentials, options=options)
    with channel:
        check = channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        try:
            response = check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as error:
            code = getattr(error, "code", None)
            name = code().name if callable(code) else "UNKNOWN"
            click.echo(f"{target}: not serving ({name})", err=True)
            sys.exit(1)
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    if response.status != health_pb2.HealthCheckResponse.SERVING:
        click.echo(f"{target}: {status}", err=True)
        sys.exit(1)
    click.echo(f"{target}: {status}")
