"""mTLS identity binding: a bearer credential is accepted only over a client certificate that
may carry it — by default one whose CN or DNS/URI SAN is the principal's name, or as a
``--client-identity-map`` says. A mismatch is refused (UNAUTHENTICATED) and audited.

Over real gRPC on loopback with a PKI generated per module (:mod:`tests.support.tls`), as in
``test_tls.py``: in-process servers for the policy's cases, and the ``sigshare-hub serve`` console
script in a subprocess with ``--client-ca`` and ``--client-identity-map`` for the options' wiring.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from sqlalchemy import Engine

from sigshare.client.errors import HubAuthError
from sigshare.client.exit_codes import ExitCode
from sigshare.client.hub_client import HubClient, HubConnection, RetryPolicy, Timeouts
from sigshare.hub.cli import cli
from sigshare.hub.domain import AuditEntry, Role
from sigshare.hub.errors import InvalidArgumentError
from sigshare.hub.rpc.app import build_hub
from sigshare.hub.rpc.client_identity import ClientIdentityPolicy
from sigshare.hub.rpc.server import TlsConfig, parse_listen
from sigshare.hub.services.parameters import set_kind_parameters
from sigshare.hub.services.principals import add_principal
from sigshare.hub.storage import session_scope
from sigshare.hub.storage.audit import AuditRepository
from sigshare.hub.storage.database import DATABASE_URL_ENV
from sigshare.v1 import hub_pb2 as pb
from sigshare.v1 import hub_pb2_grpc
from tests.support.processes import hub_command_serving
from tests.support.tls import ORGANIZATION, Issued, issue_ca, issue_leaf

TIMEOUT = 10.0


@dataclass(frozen=True)
class Pki:
    directory: Path
    ca: Issued
    server: Issued
    clients: dict[str, Issued]


CLIENTS: dict[str, list[x509.GeneralName]] = {
    "acme": [],
    "globex": [],
    "globex-gw": [x509.DNSName("globex")],
    "workload": [x509.UniformResourceIdentifier("spiffe://forum/acme")],
    "gateway": [],
}
"""Client certificates by common name, with their SANs."""


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("mtls-pki")
    now = datetime.now(UTC)
    ca, ca_cert, ca_key = issue_ca(directory, "forum", now)

    def leaf(common_name: str, usage: x509.ObjectIdentifier, san: list[x509.GeneralName]) -> Issued:
        return issue_leaf(
            directory,
            common_name,
            issuer=(ca_cert, ca_key),
            usage=usage,
            san=san,
            not_before=now - timedelta(hours=1),
            not_after=now + timedelta(days=7),
        )

    return Pki(
        directory=directory,
        ca=ca,
        server=leaf(
            "hub",
            ExtendedKeyUsageOID.SERVER_AUTH,
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
        ),
        clients={
            name: leaf(name, ExtendedKeyUsageOID.CLIENT_AUTH, san) for name, san in CLIENTS.items()
        },
    )


@dataclass(frozen=True)
class Forum:
    engine: Engine
    credentials: dict[str, str]


@pytest.fixture
def forum(sqlite_engine: Engine) -> Forum:
    credentials = {}
    with session_scope(sqlite_engine) as session:
        for name in ("acme", "globex"):
            _, credential = add_principal(
                session, actor="test", name=name, role=Role.MEMBER, now=datetime.now(UTC)
            )
            credentials[name] = credential.token
    return Forum(sqlite_engine, credentials)


@contextmanager
def hub(forum: Forum, pki: Pki, policy: ClientIdentityPolicy) -> Iterator[int]:
    tls = TlsConfig(certificate=pki.server.cert, private_key=pki.server.key, client_ca=pki.ca.cert)
    server = build_hub(
        forum.engine, parse_listen("127.0.0.1:0"), tls=tls, max_workers=4, client_identities=policy
    )
    server.server.start()
    try:
        yield server.port
    finally:
        server.stop(0)


def call(port: int, pki: Pki, certificate: str, credential: str) -> tuple[grpc.StatusCode, str]:
    """GetStatus over the client certificate ``certificate`` with a bearer ``credential``:
    the status and the name the hub knows the caller by (empty when refused)."""
    client = pki.clients[certificate]
    channel_credentials = grpc.ssl_channel_credentials(
        pki.ca.cert.read_bytes(), client.key.read_bytes(), client.cert.read_bytes()
    )
    with grpc.secure_channel(f"127.0.0.1:{port}", channel_credentials) as channel:
        stub = hub_pb2_grpc.MemberServiceStub(channel)
        try:
            response = stub.GetStatus(
                pb.GetStatusRequest(),
                metadata=(("authorization", f"Bearer {credential}"),),
                timeout=TIMEOUT,
            )
        except grpc.RpcError as error:
            return error.code(), ""
    return grpc.StatusCode.OK, response.member


def refusals(forum: Forum) -> list[AuditEntry]:
    with session_scope(forum.engine) as session:
        return AuditRepository(session).search(action="rpc.certificate_refused")


def test_by_default_a_credential_is_accepted_only_over_its_principals_certificate(
    forum: Forum, pki: Pki
) -> None:
    acme, globex = forum.credentials["acme"], forum.credentials["globex"]
    with hub(forum, pki, ClientIdentityPolicy()) as port:
        assert call(port, pki, "acme", acme) == (grpc.StatusCode.OK, "acme")
        assert call(port, pki, "globex", globex) == (grpc.StatusCode.OK, "globex")
        assert call(port, pki, "globex-gw", globex) == (grpc.StatusCode.OK, "globex")  # DNS SAN
        assert refusals(forum) == []
        # acme's credential with globex's certificate, and the other way round.
        assert call(port, pki, "globex", acme)[0] is grpc.StatusCode.UNAUTHENTICATED
        assert call(port, pki, "acme", globex)[0] is grpc.StatusCode.UNAUTHENTICATED
        # A URI SAN counts only when it is the very name.
        assert call(port, pki, "workload", acme)[0] is grpc.StatusCode.UNAUTHENTICATED
    entries = sorted(refusals(forum), key=lambda e: e.id)
    assert [(e.actor, e.target, e.details) for e in entries] == [
        ("acme", "acme", {"certificate": [f"subject:CN=globex,O={ORGANIZATION}", "cn:globex"]}),
        ("globex", "globex", {"certificate": [f"subject:CN=acme,O={ORGANIZATION}", "cn:acme"]}),
        (
            "acme",
            "acme",
            {
                "certificate": [
                    f"subject:CN=workload,O={ORGANIZATION}",
                    "cn:workload",
                    "uri:spiffe://forum/acme",
                ]
            },
        ),
    ]
    for entry in entries:  # never any part of the credential
        assert all(part not in json.dumps(entry.details) for part in (acme, globex))


def test_a_map_binds_subjects_and_sans_to_principals_and_replaces_the_default(
    forum: Forum, pki: Pki, tmp_path: Path
) -> None:
    path = tmp_path / "identities.json"
    path.write_text(
        json.dumps(
            {
                "uri:spiffe://forum/acme": "acme",
                f"subject:CN=gateway,O={ORGANIZATION}": ["acme", "globex"],
                "dns:globex": "globex",
            }
        )
    )
    acme, globex = forum.credentials["acme"], forum.credentials["globex"]
    with hub(forum, pki, ClientIdentityPolicy.from_file(path)) as port:
        assert call(port, pki, "workload", acme) == (grpc.StatusCode.OK, "acme")
        assert call(port, pki, "gateway", acme) == (grpc.StatusCode.OK, "acme")
        assert call(port, pki, "gateway", globex) == (grpc.StatusCode.OK, "globex")
        assert call(port, pki, "globex-gw", globex) == (grpc.StatusCode.OK, "globex")
        assert call(port, pki, "workload", globex)[0] is grpc.StatusCode.UNAUTHENTICATED
        # With a map only the map counts: acme's own CN is not in it.
        assert call(port, pki, "acme", acme)[0] is grpc.StatusCode.UNAUTHENTICATED
    assert [(e.actor, e.details["certificate"][1]) for e in refusals(forum)] == [
        ("acme", "cn:acme"),
        ("globex", "cn:workload"),
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "is not JSON"),
        ("{}", "non-empty JSON object"),
        ('{"acme": "acme"}', "must start with one of subject:, cn:, dns:, uri:"),
        ('{"cn:": "acme"}', "must start with one of"),
        ('{"cn:acme": "Not A Name"}', "not a principal name"),
        ('{"cn:acme": []}', "not a principal name"),
        ('{"cn:acme": 7}', "not a principal name"),
    ],
)
def test_a_malformed_map_is_refused_naming_the_file(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "identities.json"
    path.write_text(content)
    with pytest.raises(InvalidArgumentError, match=message) as caught:
        ClientIdentityPolicy.from_file(path)
    assert str(path) in str(caught.value)


def test_binding_needs_mtls(forum: Forum, pki: Pki) -> None:
    tls = TlsConfig(certificate=pki.server.cert, private_key=pki.server.key)
    with pytest.raises(InvalidArgumentError, match="needs mTLS"):
        build_hub(
            forum.engine,
            parse_listen("127.0.0.1:0"),
            tls=tls,
            client_identities=ClientIdentityPolicy(),
        )
    result = CliRunner().invoke(
        cli,
        [
            "serve",
            "--tls-cert",
            str(pki.server.cert),
            "--tls-key",
            str(pki.server.key),
            "--client-identity-map",
            str(pki.directory / "missing.json"),
        ],
    )
    assert result.exit_code == ExitCode.USAGE
    assert "--client-identity-map needs --client-ca" in result.stderr


# ------------------------------------------------------------------ the real `serve` process

STOP_TIMEOUT = 10.0


def serve(
    url: str, pki: Pki, identity_map: Path, directory: Path
) -> AbstractContextManager[tuple[subprocess.Popen[bytes], int]]:
    """``sigshare-hub serve`` with mTLS and an identity map on a free loopback port, its log
    in ``directory``/serve.log: the process and its port, once it serves; killed on exit."""
    return hub_command_serving(
        [
            *("--db", url, "serve", "--listen", "127.0.0.1:0"),
            *("--tls-cert", str(pki.server.cert), "--tls-key", str(pki.server.key)),
            *("--client-ca", str(pki.ca.cert), "--client-identity-map", str(identity_map)),
        ],
        directory / "serve.log",
        env={k: v for k, v in os.environ.items() if k != DATABASE_URL_ENV},
        cwd=directory,
    )


def test_serve_binds_certificates_to_principals_as_its_identity_map_says(
    forum: Forum, pki: Pki, tmp_path: Path
) -> None:
    """The console script as an operator runs it: ``serve --tls-cert --tls-key --client-ca
    --client-identity-map``, called with the member SDK over mTLS."""
    with session_scope(forum.engine) as session:
        set_kind_parameters(
            session,
            actor="test",
            kind="email",
            key_id="k1",
            capacity=1000,
            forum_fpr=1e-3,
            now=datetime.now(UTC),
        )
    identity_map = tmp_path / "identities.json"
    identity_map.write_text(
        json.dumps(
            {
                f"subject:CN=acme,O={ORGANIZATION}": "acme",
                "uri:spiffe://forum/acme": "acme",
                "cn:globex": "globex",
            }
        )
    )
    acme = forum.credentials["acme"]

    def member(port: int, certificate: str) -> HubClient:
        client = pki.clients[certificate]
        connection = HubConnection(
            target=f"127.0.0.1:{port}",
            credential=acme,
            ca_cert=pki.ca.cert,
            client_cert=client.cert,
            client_key=client.key,
        )
        return HubClient(connection, retry=RetryPolicy(attempts=1), timeouts=Timeouts(unary=5.0))

    url = forum.engine.url.render_as_string(hide_password=False)
    with serve(url, pki, identity_map, tmp_path) as (process, port):
        with member(port, "acme") as sdk:
            assert set(sdk.get_parameters().bloom) == {"email"}
            assert sdk.status() == ("acme", [])
        # Only the map says a certificate with CN "workload" may carry acme's credential: the
        # default rule (CN or DNS/URI SAN equal to "acme") would refuse it.
        with member(port, "workload") as sdk:
            assert sdk.status() == ("acme", [])
        assert refusals(forum) == []
        with member(port, "globex") as sdk, pytest.raises(HubAuthError) as refused:
            sdk.get_parameters()
        assert refused.value.status == grpc.StatusCode.UNAUTHENTICATED.name
        assert acme not in str(refused.value)
        process.send_signal(signal.SIGTERM)
        assert process.wait(STOP_TIMEOUT) == 0, (tmp_path / "serve.log").read_text()
    entries = refusals(forum)
    assert [(e.actor, e.action, e.target, e.details) for e in entries] == [
        (
            "acme",
            "rpc.certificate_refused",
            "acme",
            {"certificate": [f"subject:CN=globex,O={ORGANIZATION}", "cn:globex"]},
        )
    ]
    assert acme not in json.dumps(entries[0].details)
    assert acme not in (tmp_path / "serve.log").read_text()
