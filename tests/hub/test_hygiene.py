"""TLS and file hygiene of the hub: certificate validity dates at start-up, private database
files, driverless PostgreSQL URLs, the console's health endpoint and refused TLS handshakes in
the structured log; and the transport packages' import boundary (the console and the CLI reach
the database through the services, never through a repository).

The serving commands run as the real console script in subprocesses (started together: each is
mostly interpreter start-up); everything talks to loopback only.
"""

from __future__ import annotations

import ast
import ipaddress
import json
import logging
import os
import signal
import socket
import ssl
import stat
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from fastapi.testclient import TestClient
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

import sigshare.hub.cli
import sigshare.hub.web
from sigshare.client.exit_codes import ExitCode
from sigshare.hub.cli import cli
from sigshare.hub.cli.server_options import check_certificate_dates
from sigshare.hub.errors import InvalidArgumentError
from sigshare.hub.storage import make_engine, migrate
from sigshare.hub.storage.database import DATABASE_URL_ENV
from sigshare.hub.web import create_app
from sigshare.hub.web.security import SECURITY_HEADERS
from tests.support.databases import fresh_postgres_database
from tests.support.hub import COORDINATOR, provision
from tests.support.processes import start_hub_command, wait_for_port
from tests.support.tls import issue_ca, issue_leaf

COMMAND_TIMEOUT = 30.0
START_TIMEOUT = 30.0
"""Generous: the servers start together, each importing gRPC or FastAPI."""
LEAF_DAYS = {
    "expired": (-30, -1),
    "not-yet-valid": (1, 30),
    "expiring": (-1, 10),
    "fresh": (-1, 400),
}
"""Validity of each server certificate, in days from now: (not before, not after)."""

# ------------------------------------------------------------------------------ certificates


@dataclass(frozen=True)
class ServerCert:
    cert: Path
    key: Path
    not_before: datetime
    not_after: datetime

    def dates(self) -> str:
        moment = "%Y-%m-%d %H:%M:%SZ"
        return f"valid from {self.not_before:{moment}} to {self.not_after:{moment}}"


@dataclass(frozen=True)
class Pki:
    ca: Path
    leaves: dict[str, ServerCert]
    chain_expired: ServerCert
    """An expired server certificate followed by its valid CA, in one chain file."""


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("hygiene-pki")
    now = datetime.now(UTC).replace(microsecond=0)
    ca_files, ca, ca_key = issue_ca(
        directory,
        "hygiene",
        now,
        not_before=now - timedelta(days=60),
        not_after=now + timedelta(days=800),
    )

    def leaf(stem: str, start: datetime, end: datetime, *, chain: bool = False) -> ServerCert:
        issued = issue_leaf(
            directory,
            stem,
            issuer=(ca, ca_key),
            usage=ExtendedKeyUsageOID.SERVER_AUTH,
            not_before=start,
            not_after=end,
            san=[x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
        )
        if chain:
            issued.cert.write_bytes(issued.cert.read_bytes() + ca_files.cert.read_bytes())
        return ServerCert(issued.cert, issued.key, start, end)

    leaves = {
        stem: leaf(stem, now + timedelta(days=start), now + timedelta(days=end))
        for stem, (start, end) in LEAF_DAYS.items()
    }
    chained = leaf("chain-expired", now - timedelta(days=30), now - timedelta(days=1), chain=True)
    return Pki(ca=ca_files.cert, leaves=leaves, chain_expired=chained)


def test_certificate_dates_are_checked_on_the_first_certificate_of_a_chain(pki: Pki) -> None:
    for stem in ("expired", "not-yet-valid"):
        with pytest.raises(InvalidArgumentError) as refused:
            check_certificate_dates(pki.leaves[stem].cert)
        assert str(pki.leaves[stem].cert) in str(refused.value)
        assert pki.leaves[stem].dates() in str(refused.value)
    with pytest.raises(InvalidArgumentError, match="has expired"):
        check_certificate_dates(pki.chain_expired.cert)  # the valid CA after it does not count
    assert check_certificate_dates(pki.leaves["fresh"].cert) is None
    warning = check_certificate_dates(pki.leaves["expiring"].cert)
    assert warning is not None
    assert f"{pki.leaves['expiring'].cert} expires in " in warning
    # The warning starts exactly 30 days before the end.
    end = pki.leaves["fresh"].not_after
    assert check_certificate_dates(pki.leaves["fresh"].cert, now=end - timedelta(days=30)) is None
    near = check_certificate_dates(
        pki.leaves["fresh"].cert, now=end - timedelta(days=30, seconds=-1)
    )
    assert near is not None
    assert "expires in 30.0 days" in near


# ------------------------------------------------------------------- serve and web, for real


def _environment() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != DATABASE_URL_ENV}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _nothing_listens(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture(scope="module")
def hub_database(tmp_path_factory: pytest.TempPathFactory) -> str:
    directory = tmp_path_factory.mktemp("hygiene-db")
    url = f"sqlite:///{directory / 'hub.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    try:
        provision(engine)
    finally:
        engine.dispose()
    return url


@pytest.mark.parametrize("command", ["serve", "web"])
@pytest.mark.parametrize(
    "case",
    [("expired", "has expired"), ("not-yet-valid", "is not valid yet")],
    ids=["expired", "not-yet-valid"],
)
def test_a_certificate_outside_its_dates_is_refused_before_anything_listens(
    pki: Pki, hub_database: str, tmp_path: Path, command: str, case: tuple[str, str]
) -> None:
    stem, problem = case
    cert, port, port_file = pki.leaves[stem], _free_port(), tmp_path / "port"
    result = CliRunner().invoke(
        cli,
        ["--db", hub_database, command, "--listen", f"127.0.0.1:{port}",
         "--tls-cert", str(cert.cert), "--tls-key", str(cert.key), "--port-file", str(port_file)],
    )  # fmt: skip
    assert result.exit_code == ExitCode.INPUT, result.output
    message = " ".join(result.stderr.split())
    assert message == f"error: the TLS certificate in {cert.cert} {problem} ({cert.dates()}): " + (
        "renew it" if stem == "expired" else "check the host's clock or the certificate"
    )
    assert not port_file.exists()
    assert _nothing_listens(port)


@dataclass
class Run:
    command: str
    process: subprocess.Popen[bytes]
    port_file: Path
    log: Path
    """The process's stderr and stdout."""

    def log_text(self) -> str:
        return self.log.read_text()

    def port(self) -> int:
        return wait_for_port(self.process, self.port_file, time.monotonic() + START_TIMEOUT)

    def stop(self) -> list[dict[str, Any]]:
        """SIGTERM; the log's records (every line must be one JSON object)."""
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(timeout=COMMAND_TIMEOUT) == 0, self.log_text()
        return [json.loads(line) for line in self.log_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def runs(
    pki: Pki, hub_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Run]]:
    """``serve`` and ``web`` with the certificate expiring soon and the one valid for long, all
    started at once, killed at the end if still running. ``serve-fresh`` requires client
    certificates (mTLS), for the handshake refusals."""
    directory = tmp_path_factory.mktemp("hygiene-runs")
    started = {}
    for command in ("serve", "web"):
        for stem in ("expiring", "fresh"):
            name = f"{command}-{stem}"
            cert = pki.leaves[stem]
            mtls = ["--client-ca", str(pki.ca)] if name == "serve-fresh" else []
            log = directory / f"{name}.log"
            process, port_file = start_hub_command(
                ["--db", hub_database, command, "--listen", "127.0.0.1:0",
                 "--tls-cert", str(cert.cert), "--tls-key", str(cert.key), *mtls, "--log-json"],
                log,
                env=_environment(),
            )  # fmt: skip
            started[name] = Run(command, process, port_file, log)
    try:
        yield started
    finally:
        for run in started.values():
            if run.process.poll() is None:
                run.process.kill()
            run.process.wait(timeout=COMMAND_TIMEOUT)


def _warnings(records: list[dict[str, Any]]) -> list[str]:
    return [r["message"] for r in records if r["level"] == "warning"]


def test_serve_warns_of_a_certificate_expiring_within_30_days(
    runs: dict[str, Run], pki: Pki
) -> None:
    run = runs["serve-expiring"]
    assert _grpc_health(run.port(), pki.ca) == health_pb2.HealthCheckResponse.SERVING
    _assert_expiry_warning(run.stop(), pki.leaves["expiring"])


def test_web_warns_of_a_certificate_expiring_within_30_days_and_answers_healthz(
    runs: dict[str, Run], pki: Pki
) -> None:
    expiring, fresh = runs["web-expiring"], runs["web-fresh"]
    for run in (expiring, fresh):
        port = run.port()
        assert _https(port, pki.ca, "GET") == (200, b'{"status":"ok"}')
        assert _https(port, pki.ca, "HEAD") == (200, b"")
    _assert_expiry_warning(expiring.stop(), pki.leaves["expiring"])
    assert _warnings(fresh.stop()) == []


def _assert_expiry_warning(records: list[dict[str, Any]], cert: ServerCert) -> None:
    [warning] = _warnings(records)
    left = warning.removeprefix(f"the TLS certificate in {cert.cert} expires in ")
    days, _, rest = left.partition(" ")
    assert 9.9 <= float(days) <= 10.0, warning  # the certificate was made 10 days from now
    assert rest == f"days, on {cert.not_after:%Y-%m-%d %H:%M:%SZ}: renew it"


def _grpc_health(port: int, ca: Path) -> int:
    credentials = grpc.ssl_channel_credentials(ca.read_bytes())
    with grpc.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)  # the generated stub is untyped
        return int(stub.Check(health_pb2.HealthCheckRequest(), timeout=10.0).status)


def _https(port: int, ca: Path, method: str) -> tuple[int, bytes]:
    context = ssl.create_default_context(cafile=str(ca))
    with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=context) as client:
        response = client.request(method, "/healthz")
    assert "set-cookie" not in response.headers
    return response.status_code, response.content


def test_refused_handshakes_are_structured_log_lines(runs: dict[str, Run], pki: Pki) -> None:
    """With mTLS, a client without a certificate is refused in the handshake: one JSON record
    per refusal, no raw gRPC line in the log, and no expiry warning for a long-lived
    certificate."""
    run = runs["serve-fresh"]
    port = run.port()
    attempts = 3
    for _ in range(attempts):
        with pytest.raises(grpc.RpcError) as refused:
            _grpc_health(port, pki.ca)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    records = run.stop()
    refusals = [r for r in records if r["message"].startswith("tls handshake refused")]
    assert len(refusals) == attempts, records
    assert {(r["logger"], r["level"]) for r in refusals} == {("sigshare.hub.grpc", "warning")}
    assert all("PEER_DID_NOT_RETURN_A_CERTIFICATE" in r["message"] for r in refusals)
    assert _warnings(records) == [r["message"] for r in refusals]
    assert records[-1]["message"] == "stopped"


# ------------------------------------------------------------------------- database files


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@contextmanager
def _umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def test_the_sqlite_database_and_its_directories_are_private(tmp_path: Path) -> None:
    # With no umask at all, SQLite alone would create 0644 files and mkdir 0777 directories.
    path = tmp_path / "fresh" / "nested" / "hub.db"
    with _umask(0):
        result = CliRunner().invoke(cli, ["--db", f"sqlite:///{path}", "db", "upgrade"])
        assert result.exit_code == 0, result.output
        assert _mode(tmp_path / "fresh") == 0o700
        assert _mode(tmp_path / "fresh" / "nested") == 0o700
        assert _mode(path) == 0o600
        engine = make_engine(f"sqlite:///{path}")
        try:
            provision(engine, members=["m1"])  # a write; the pooled connection keeps the WAL
            companions = [Path(f"{path}-wal"), Path(f"{path}-shm")]
            assert [_mode(p) for p in companions] == [0o600, 0o600]
        finally:
            engine.dispose()
    assert sorted(p.name for p in path.parent.iterdir()) == ["hub.db"]  # WAL folded on close


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_a_loose_database_file_warns_and_db_upgrade_narrows_it(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    migrate.upgrade(f"sqlite:///{path}")
    path.chmod(0o644)
    storage_log = logging.getLogger("sigshare.hub.storage")
    collected = _Collector()
    # Attached directly: a `serve` or `web` run in this process stops "sigshare" propagating.
    storage_log.addHandler(collected)
    try:
        make_engine(f"sqlite:///{path}").dispose()
    finally:
        storage_log.removeHandler(collected)
    assert collected.messages == [
        f"the hub database file {path} is accessible to group or others (mode 0644): run "
        f"`sigshare-hub db upgrade` or `chmod 600 {path}`"
    ]
    assert _mode(path) == 0o644  # a warning only: the operator's file is not changed by use
    result = CliRunner().invoke(cli, ["--db", f"sqlite:///{path}", "db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert f"narrowed {path} from mode 0644 to 0600" in " ".join(result.stderr.split())
    assert _mode(path) == 0o600
    again = CliRunner().invoke(cli, ["--db", f"sqlite:///{path}", "db", "upgrade"])
    assert again.exit_code == 0
    assert "narrowed" not in again.stderr


@pytest.fixture
def fresh_postgres(postgres_server: URL) -> Iterator[URL]:
    with fresh_postgres_database(postgres_server) as url:
        yield url


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_driverless_postgresql_urls_use_the_shipped_driver(
    fresh_postgres: URL, scheme: str
) -> None:
    url = fresh_postgres.set(drivername=scheme).render_as_string(hide_password=False)
    assert url.startswith(f"{scheme}://")
    upgraded = CliRunner().invoke(cli, ["--db", url, "db", "upgrade", "--json"])
    assert upgraded.exit_code == 0, upgraded.output
    assert json.loads(upgraded.stdout)["to"] == migrate.head_revision()
    added = CliRunner().invoke(cli, ["--db", url, "member", "add", "acme"])
    assert added.exit_code == 0, added.output
    engine = make_engine(url)
    try:
        assert engine.url.drivername == "postgresql+psycopg2"
        with engine.connect() as connection:
            names = connection.execute(text("SELECT name FROM principals")).scalars().all()
    finally:
        engine.dispose()
    assert names == ["acme"]


# ---------------------------------------------------------------------------- /healthz


def _audit_count(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT count(*) FROM audit_log")).scalar_one())


def test_healthz_answers_without_credentials_session_or_audit(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    try:
        credentials = provision(engine)
        client = TestClient(create_app(engine, secure_cookies=False))
        before = _audit_count(engine)
        assert before > 0
        got = client.get("/healthz")
        assert (got.status_code, got.content) == (200, b'{"status":"ok"}')
        assert got.headers["content-type"] == "application/json"
        for name, value in SECURITY_HEADERS.items():
            assert got.headers[name] == value
        head = client.head("/healthz")
        assert (head.status_code, head.content) == (200, b"")
        assert "set-cookie" not in got.headers
        assert "set-cookie" not in head.headers
        assert client.cookies == {}
        # A signed-in browser's probe is not a page view either.
        form = client.get("/login")
        assert form.status_code == 200
        signed = client.post(
            "/login",
            data={"credential": credentials[COORDINATOR], "csrf": client.cookies["sigshare_login"]},
            follow_redirects=False,
        )
        assert signed.status_code == 303
        after_sign_in = _audit_count(engine)
        assert client.get("/healthz").status_code == 200
        assert _audit_count(engine) == after_sign_in
    finally:
        engine.dispose()


@pytest.mark.parametrize("broken", ["unreachable-postgres", "not-a-hub-database"])
def test_healthz_is_503_when_the_database_does_not_answer(tmp_path: Path, broken: str) -> None:
    if broken == "unreachable-postgres":
        url = "postgresql://nobody@127.0.0.1:1/none"  # nothing listens on port 1
    else:
        url = f"sqlite:///{tmp_path / 'empty.db'}"  # a file without the hub's tables
    engine = make_engine(url)
    try:
        client = TestClient(create_app(engine, secure_cookies=False))
        got = client.get("/healthz")
        assert (got.status_code, got.content) == (503, b'{"status":"unavailable"}')
        assert client.head("/healthz").status_code == 503
    finally:
        engine.dispose()


# ------------------------------------------------------------------------- import boundary


def _repository_uses(path: Path) -> list[str]:
    """Each ``*Repository`` of ``sigshare.hub.storage`` the module at ``path`` imports or
    reaches through an imported storage module, as ``line: name``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    uses = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
            "sigshare.hub.storage"
        ):
            uses += [
                f"{node.lineno}: {alias.name}"
                for alias in node.names
                if alias.name.endswith("Repository")
            ]
        elif isinstance(node, ast.Attribute) and node.attr.endswith("Repository"):
            uses.append(f"{node.lineno}: {ast.unparse(node)}")
    return uses


@pytest.mark.parametrize("package", [sigshare.hub.web, sigshare.hub.cli], ids=lambda p: p.__name__)
def test_the_console_and_the_cli_use_no_repository(package: Any) -> None:
    root = Path(package.__file__).parent
    modules = sorted(root.rglob("*.py"))
    assert modules
    found = {
        str(path.relative_to(root)): uses for path in modules if (uses := _repository_uses(path))
    }
    assert found == {}, f"{package.__name__} must call services, not repositories: {found}"
