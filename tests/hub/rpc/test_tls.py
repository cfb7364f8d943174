"""Transport security of the hub: TLS, mTLS and the plaintext policy, over real gRPC on loopback.

A module-scoped PKI is generated with ``cryptography``: a forum CA, a server certificate for
``127.0.0.1`` / ``localhost`` and a client certificate signed by it, an expired server
certificate from the same CA, and an unrelated CA with its own client certificate. Every failure
is asserted as the member SDK's typed error, never a raw ``grpc.RpcError``: a certificate the
other side refuses is a ``HubTlsError`` explaining it, after one attempt; only what may pass
(plaintext against TLS, which a restarting loopback hub looks like too) stays unavailable.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from sqlalchemy import Engine

from sigshare.client.errors import HubClientError, HubTlsError, HubUnavailableError
from sigshare.client.hub_client import HubClient, HubConnection, RetryPolicy, Timeouts
from sigshare.hub.domain import Role
from sigshare.hub.errors import InvalidArgumentError
from sigshare.hub.rpc.app import build_hub
from sigshare.hub.rpc.server import TlsConfig, parse_listen
from sigshare.hub.services.parameters import set_kind_parameters
from sigshare.hub.services.principals import add_principal
from sigshare.hub.storage import make_engine, migrate, session_scope
from tests.support.tls import ForumPki, Issued, issue_forum_pki

KEY_ID = "tls-epoch"
NO_RETRY = RetryPolicy(attempts=1)
QUICK = Timeouts(unary=5.0)
"""Failures below are handshake failures: immediate UNAVAILABLE, never a deadline."""

# ------------------------------------------------------------------------------------- the PKI


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> ForumPki:
    return issue_forum_pki(tmp_path_factory.mktemp("pki"), datetime.now(UTC))


# ------------------------------------------------------------------------------------- the hub


@dataclass(frozen=True)
class Database:
    engine: Engine
    credential: str
    """A member's bearer credential."""


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """One migrated SQLite hub with a member and published ``email`` parameters."""
    url = f"sqlite:///{tmp_path_factory.mktemp('tls-db') / 'hub.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    now = datetime.now(UTC)
    with session_scope(engine) as session:
        _, credential = add_principal(
            session, actor="tls-test", name="acme", role=Role.MEMBER, now=now
        )
        set_kind_parameters(
            session,
            actor="tls-test",
            kind="email",
            key_id=KEY_ID,
            capacity=1000,
            forum_fpr=1e-3,
            now=now,
        )
    yield Database(engine=engine, credential=credential.token)
    engine.dispose()


@contextmanager
def hub(database: Database, tls: TlsConfig) -> Iterator[str]:
    """A started TLS hub on a free loopback port; yields its target."""
    server = build_hub(database.engine, parse_listen("127.0.0.1:0"), tls=tls, max_workers=4)
    server.server.start()
    try:
        yield f"127.0.0.1:{server.port}"
    finally:
        server.stop(0)


def get_parameters(
    database: Database,
    target: str,
    *,
    ca: Path | None = None,
    client: Issued | None = None,
    insecure: bool = False,
) -> set[str]:
    """The kinds the hub publishes, asked through the member SDK without retries."""
    connection = HubConnection(
        target=target,
        credential=database.credential,
        ca_cert=ca,
        client_cert=client.cert if client else None,
        client_key=client.key if client else None,
        insecure=insecure,
    )
    with HubClient(connection, retry=NO_RETRY, timeouts=QUICK) as sdk:
        return set(sdk.get_parameters().bloom)


def assert_unavailable(
    error: pytest.ExceptionInfo[HubClientError], database: Database, reason: str = ""
) -> None:
    """Refused at the transport: the SDK's ``HubUnavailableError``, exactly, from UNAVAILABLE,
    with ``reason`` in its message and the credential nowhere in it."""
    assert type(error.value) is HubUnavailableError, repr(error.value)
    assert error.value.status == grpc.StatusCode.UNAVAILABLE.name
    assert reason.lower() in str(error.value).lower()
    assert database.credential not in str(error.value)


def assert_refused_for_good(
    error: pytest.ExceptionInfo[HubClientError], database: Database, *phrases: str
) -> None:
    """Refused over a certificate: the SDK's ``HubTlsError`` (a configuration error, never
    retried) from UNAVAILABLE, saying ``phrases``, with the credential nowhere in it."""
    assert type(error.value) is HubTlsError, repr(error.value)
    assert error.value.status == grpc.StatusCode.UNAVAILABLE.name
    for phrase in phrases:
        assert phrase in str(error.value)
    assert database.credential not in str(error.value)


# ------------------------------------------------------------------------------------------ TLS


@pytest.fixture
def tls_target(database: Database, pki: ForumPki) -> Iterator[str]:
    with hub(database, TlsConfig(pki.server.cert, pki.server.key)) as target:
        yield target


def test_client_trusting_the_forum_ca_gets_parameters(
    database: Database, pki: ForumPki, tls_target: str
) -> None:
    assert get_parameters(database, tls_target, ca=pki.ca.cert) == {"email"}


def test_localhost_name_matches_the_certificate(
    database: Database, pki: ForumPki, tls_target: str
) -> None:
    port = tls_target.rpartition(":")[2]
    assert get_parameters(database, f"localhost:{port}", ca=pki.ca.cert) == {"email"}


def test_client_trusting_another_ca_is_refused(
    database: Database, pki: ForumPki, tls_target: str
) -> None:
    with pytest.raises(HubClientError) as error:
        get_parameters(database, tls_target, ca=pki.other_ca.cert)
    assert_refused_for_good(
        error,
        database,
        f"the hub's certificate at {tls_target} is not trusted (unable to get local issuer "
        f"certificate), checked against the CA certificate {pki.other_ca.cert}",
        "set ca_cert (--ca-cert) to the forum CA's certificate",
    )


def test_plaintext_client_cannot_talk_to_a_tls_hub(database: Database, tls_target: str) -> None:
    with pytest.raises(HubClientError) as error:
        get_parameters(database, tls_target, insecure=True)
    assert_unavailable(error, database, "a hub serving TLS closes plaintext connections")


def test_a_tls_client_cannot_talk_to_a_plaintext_hub(database: Database, pki: ForumPki) -> None:
    server = build_hub(database.engine, parse_listen("127.0.0.1:0"), tls=None, insecure=True)
    server.server.start()
    target = f"127.0.0.1:{server.port}"
    try:
        with pytest.raises(HubClientError) as error:
            get_parameters(database, target, ca=pki.ca.cert)
    finally:
        server.stop(0)
    assert_refused_for_good(error, database, f"no TLS answers at {target}")


def test_expired_server_certificate_is_refused(database: Database, pki: ForumPki) -> None:
    tls = TlsConfig(pki.expired_server.cert, pki.expired_server.key)
    with hub(database, tls) as target, pytest.raises(HubClientError) as error:
        get_parameters(database, target, ca=pki.ca.cert)
    assert_refused_for_good(
        error,
        database,
        "is not trusted (certificate has expired)",
        "ask the hub's operator to renew its certificate",
    )


# ----------------------------------------------------------------------------------------- mTLS


@pytest.fixture
def mtls_target(database: Database, pki: ForumPki) -> Iterator[str]:
    with hub(database, TlsConfig(pki.server.cert, pki.server.key, client_ca=pki.ca.cert)) as target:
        yield target


def test_mtls_accepts_a_client_certificate_from_the_forum_ca(
    database: Database, pki: ForumPki, mtls_target: str
) -> None:
    assert get_parameters(database, mtls_target, ca=pki.ca.cert, client=pki.client) == {"email"}


def test_mtls_refuses_a_client_without_a_certificate(
    database: Database, pki: ForumPki, mtls_target: str
) -> None:
    with pytest.raises(HubClientError) as error:
        get_parameters(database, mtls_target, ca=pki.ca.cert)
    assert_refused_for_good(
        error,
        database,
        f"the hub at {mtls_target} closed the connection after the TLS handshake: the hub "
        "requires a client certificate signed by its CA (mTLS), and none was presented",
        "set client_cert and client_key",
    )


def test_mtls_refuses_a_certificate_from_an_unrelated_ca(
    database: Database, pki: ForumPki, mtls_target: str
) -> None:
    with pytest.raises(HubClientError) as error:
        get_parameters(database, mtls_target, ca=pki.ca.cert, client=pki.other_client)
    assert_refused_for_good(
        error,
        database,
        f"the hub at {mtls_target} refused the client certificate {pki.other_client.cert}: the "
        "hub requires a client certificate signed by its CA",
    )


def test_a_refused_client_certificate_is_not_retried(
    database: Database, pki: ForumPki, mtls_target: str
) -> None:
    """A certificate does not change between attempts: one attempt, no backoff, however many
    the policy allows (a transient failure would be retried five times)."""
    waits: list[float] = []
    connection = HubConnection(
        target=mtls_target, credential=database.credential, ca_cert=pki.ca.cert
    )
    with (
        HubClient(
            connection, retry=RetryPolicy(attempts=6), timeouts=QUICK, sleep=waits.append
        ) as sdk,
        pytest.raises(HubTlsError, match="requires a client certificate signed by its CA"),
    ):
        sdk.get_parameters()
    assert waits == []


# ---------------------------------------------------------------------------- transport policy


def test_tls_is_required_without_insecure(database: Database) -> None:
    with pytest.raises(InvalidArgumentError, match="TLS is required"):
        build_hub(database.engine, parse_listen("127.0.0.1:0"), tls=None, insecure=False)


@pytest.mark.parametrize("host", ["0.0.0.0", "[::]", "192.0.2.10", "hub.example.org"])
def test_insecure_is_refused_off_loopback_before_binding(
    database: Database, monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    def no_server(*args: object, **kwargs: object) -> grpc.Server:
        raise AssertionError("a gRPC server was created for a refused plaintext address")

    monkeypatch.setattr(grpc, "server", no_server)
    with pytest.raises(InvalidArgumentError, match="loopback"):
        build_hub(database.engine, parse_listen(f"{host}:0"), tls=None, insecure=True)


def test_insecure_on_loopback_serves_plaintext(database: Database) -> None:
    server = build_hub(database.engine, parse_listen("127.0.0.1:0"), tls=None, insecure=True)
    server.server.start()
    try:
        assert get_parameters(database, f"127.0.0.1:{server.port}", insecure=True) == {"email"}
    finally:
        server.stop(0)


@pytest.mark.parametrize("missing", ["certificate", "private_key", "client_ca"])
def test_unreadable_tls_file_names_the_file(
    database: Database, pki: ForumPki, tmp_path: Path, missing: str
) -> None:
    absent = tmp_path / f"no-such-{missing}.pem"
    files = {
        "certificate": pki.server.cert,
        "private_key": pki.server.key,
        "client_ca": pki.ca.cert,
    }
    tls = TlsConfig(**{**files, missing: absent})
    with pytest.raises(InvalidArgumentError, match="cannot read TLS material") as error:
        build_hub(database.engine, parse_listen("127.0.0.1:0"), tls=tls)
    assert str(absent) in str(error.value)


def test_tls_directory_instead_of_file_is_an_invalid_argument(
    database: Database, pki: ForumPki, tmp_path: Path
) -> None:
    tls = TlsConfig(certificate=tmp_path, private_key=pki.server.key)
    with pytest.raises(InvalidArgumentError, match="cannot read TLS material") as error:
        build_hub(database.engine, parse_listen("127.0.0.1:0"), tls=tls)
    assert str(tmp_path) in str(error.value)


@pytest.mark.parametrize("broken", ["certificate", "private_key", "swapped"])
def test_malformed_tls_material_is_an_invalid_argument(
    database: Database, pki: ForumPki, tmp_path: Path, broken: str
) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("this is not PEM\n")
    tls = {
        "certificate": TlsConfig(junk, pki.server.key),
        "private_key": TlsConfig(pki.server.cert, junk),
        "swapped": TlsConfig(pki.server.cert, pki.client.key),  # a key of another certificate
    }[broken]
    with pytest.raises(InvalidArgumentError, match=r"is not (a|an|the) "):
        build_hub(database.engine, parse_listen("127.0.0.1:0"), tls=tls)


def test_busy_port_is_an_invalid_argument(database: Database, pki: ForumPki) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(InvalidArgumentError, match=str(port)):
            build_hub(
                database.engine,
                parse_listen(f"127.0.0.1:{port}"),
                tls=TlsConfig(pki.server.cert, pki.server.key),
            )
