"""The gRPC server: listening address policy, TLS/mTLS, message limits, health, reflection,
graceful shutdown."""

from __future__ import annotations

import ipaddress
import signal
import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from sigshare.hub.errors import InvalidArgumentError

CHUNK_BYTES = 1 << 20
"""Data chunks of submissions and downloads; messages are limited to a few chunks."""
MAX_MESSAGE_BYTES = 4 * CHUNK_BYTES
"""Also bounds a rotation's UploadEnvelopes, one message: about 1.5 KB per recipient, so a forum
of well over two thousand members fits (``tests/hub/rpc/test_key_rpc.py`` checks 500 envelopes
of the largest size)."""
SHUTDOWN_GRACE_SECONDS = 20.0


@dataclass(frozen=True)
class TlsConfig:
    certificate: Path
    private_key: Path
    client_ca: Path | None = None
    """When set, clients must present a certificate signed by this CA (mTLS)."""


@dataclass(frozen=True)
class ListenAddress:
    host: str
    port: int

    @property
    def target(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def parse_listen(value: str) -> ListenAddress:
    """``HOST:PORT`` or ``[V6]:PORT``; port 0 picks a free port."""
    host, separator, port_text = value.rpartition(":")
    if not separator or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise InvalidArgumentError(f"listen address {value!r} is not HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return ListenAddress(host=host, port=int(port_text))


def server_credentials(tls: TlsConfig) -> grpc.ServerCredentials:
    """Credentials from PEM files, checked here so a bad file is named instead of surfacing as
    gRPC's "failed to bind"."""
    try:
        key = tls.private_key.read_bytes()
        certificate = tls.certificate.read_bytes()
        client_ca = tls.client_ca.read_bytes() if tls.client_ca else None
    except OSError as error:
        raise InvalidArgumentError(f"cannot read TLS material: {error}") from None
    try:
        chain = x509.load_pem_x509_certificates(certificate)
    except ValueError:
        raise InvalidArgumentError(f"{tls.certificate} is not a PEM certificate") from None
    try:
        private_key = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError):
        raise InvalidArgumentError(
            f"{tls.private_key} is not an unencrypted PEM private key"
        ) from None
    if chain[0].public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        raise InvalidArgumentError(
            f"{tls.private_key} is not the private key of the certificate in {tls.certificate}"
        )
    if client_ca is not None:
        try:
            x509.load_pem_x509_certificates(client_ca)
        except ValueError:
            raise InvalidArgumentError(f"{tls.client_ca} is not a PEM CA bundle") from None
    return grpc.ssl_server_credentials(
        [(key, certificate)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


def build_server(
    address: ListenAddress,
    register: Callable[[grpc.Server], Sequence[str]],
    *,
    tls: TlsConfig | None,
    insecure: bool,
    interceptors: Sequence[grpc.ServerInterceptor] = (),
    max_workers: int = 16,
) -> BoundServer:
    """A server bound to ``address``, ready to start.

    Plaintext needs ``insecure`` *and* a loopback address: a hub must never accept credentials
    and sketches in the clear over a network.
    """
    if tls is None and not insecure:
        raise InvalidArgumentError(
            "TLS is required: pass --tls-cert and --tls-key (or --insecure on loopback)"
        )
    if tls is None and not address.is_loopback:
        raise InvalidArgumentError(
            f"refusing plaintext on {address.host}: --insecure is allowed only on loopback"
        )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="sigshare-rpc"),
        interceptors=list(interceptors),
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ],
    )
    service_names = list(register(server))
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ["", *service_names]:
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        [*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )
    credentials = None if tls is None else server_credentials(tls)
    try:
        if credentials is None:
            port = server.add_insecure_port(address.target)
        else:
            port = server.add_secure_port(address.target, credentials)
    except RuntimeError:  # grpcio raises where older releases returned 0
        port = 0
    if port == 0:
        raise InvalidArgumentError(
            f"cannot listen on {address.target}: the address is in use or not local"
        )
    return BoundServer(server=server, port=port, health=health_servicer)


@dataclass(frozen=True)
class BoundServer:
    server: grpc.Server
    port: int
    health: health.HealthServicer

    def stop(self, grace: float = SHUTDOWN_GRACE_SECONDS) -> None:
        """Report NOT_SERVING (load balancers drain), refuse new calls, let running ones end."""
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()

    def serve_until_signalled(self, on_serving: Callable[[], None] | None = None) -> None:
        """Run until SIGTERM or SIGINT, then stop gracefully.

        ``on_serving`` runs once the signal handlers are in place and the server accepts calls,
        so whoever it tells (a port file, a log line) can rely on both.
        """
        stopped = threading.Event()

        def handle(signum: int, frame: object) -> None:
            stopped.set()

        previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.server.start()
            if on_serving is not None:
                on_serving()
            stopped.wait()
            self.stop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
