"""Twenty members sync through HAProxy in front of two hub replicas, and one replica is killed.

Everything runs on loopback: two ``sigshare-hub serve`` processes (:mod:`tests.support.processes`)
on a fresh PostgreSQL database and one shared payload directory (``SIGSHARE_HUB_BLOB_DIR``), serving
TLS with a forum CA's certificate for 127.0.0.1 and localhost; HAProxy (Debian's package) in front
of them terminating TLS for the members (the forum CA's certificate for 127.0.0.1, ALPN h2) and
speaking TLS and HTTP/2 to the replicas as the shipped ``deploy/hub/compose/haproxy.cfg`` does
(``ssl verify required ca-file … alpn h2``, plus ``verifyhost``/``sni``/``check-sni localhost`` so
that traffic and health checks alike verify the replica's name); and twenty members' ``sigshare
sync`` as concurrent subprocesses pointed at the proxy and trusting the forum CA. Once five members'
submissions are stored, replica 0 gets SIGKILL. Afterwards:

* every sync exits 0 — requests in flight on the dead replica are retried, by HAProxy
  (``retries`` with ``option redispatch``, ``retry-on conn-failure empty-response``) or by the
  member's SDK (transient gRPC failures, and a response stream HAProxy ended without trailers
  because the replica died mid-answer: exponential backoff with jitter, 5 retries);
* HAProxy has replica 0 DOWN (connection refused) and replica 1 UP;
* nothing is lost or duplicated: each member has exactly one active submission, the SHA-256 of
  its latest local sketch, and no submission stored twice (``tests.support.forum.check_hub``);
  every stored submission has its payload file, and a sweep leaves exactly those files;
* a final pull through the proxy (replica 0 still dead) gives every member exactly the oracle:
  for each value it holds, the number of other members holding it (values held by one member
  alone not listed). The oracle is exact because the filters are at a tenth of their capacity,
  where the summed false-positive mass of all queries is below 1e-9 (computed and asserted), and
  the forum secret is fixed, so the run hashes alike every time.

HAProxy checks each replica with the standard gRPC health service. Its ``http-check send`` cannot
carry a gRPC request (the body is a C string, and a gRPC message frame starts with NUL bytes;
a body-less POST is answered HTTP 200 with ``grpc-status`` 12 in the headers, so checking the
status would prove nothing), so the check is a ``tcp-check`` that speaks HTTP/2 itself: the
client preface, an empty SETTINGS frame, a HEADERS frame for ``POST
/grpc.health.v1.Health/Check`` and a DATA frame with the empty ``HealthCheckRequest``. It passes
only when the answer carries the gRPC message ``HealthCheckResponse{status: SERVING}``. The
check runs over TLS with ALPN h2 (``tcp-check connect default`` takes ``ssl … alpn h2`` from the
server line; ``check-ssl check-alpn h2`` say so outright): the hub's gRPC server answers a TLS
connection without ALPN h2 with nothing at all. The second test shows a NOT_SERVING server taken
out and put back when it serves again, and servers whose certificate another CA signed, or the
forum CA for another name, kept out by the TLS handshake of the check itself.

A run on 2 cores shared with other jobs, TLS to the replicas: set up in 3.9 s; 20 syncs in
18.2 s, replica 0 SIGKILLed 14.7 s in with 6 of 20 members submitted and 20 syncs running; every
sync finished, after 7 SDK retries, 2 HAProxy retries and 12 redispatches (replica 0 had served
35 requests, replica 1 64); 20 final pulls in 1.6 s without retries; 24.5 s in all. The figures
of each run are in the assertion messages and printed. Without HAProxy the tests skip locally
and fail in CI (``$CI`` set), where ``.ci/run`` installs it.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID
from grpc_health.v1 import health, health_pb2_grpc
from grpc_health.v1.health_pb2 import HealthCheckResponse
from sqlalchemy.engine import URL

from sigshare.client.cli import cli as client_cli
from sigshare.client.state import LocalState
from sigshare.hub.services import payloads
from sigshare.hub.storage import make_engine, session_scope
from sigshare.hub.storage.blobs import BLOB_DIR_ENV
from sigshare.hub.storage.submissions import SubmissionRepository
from sigshare.sketch.bloom import BloomParams
from sigshare.sketch.keys import ForumSecret, write_secret_file
from sigshare.sketch.kinds import get_kind
from tests.support.databases import fresh_postgres_database
from tests.support.e2e import (
    Command,
    Outcome,
    SecretWatch,
    client_env,
    filter_fpr,
    finish,
    start,
    write_config,
    write_private,
)
from tests.support.forum import (
    FORUM_FPR,
    KEY_ID,
    KIND,
    check_hub,
    provision_members,
    write_emails,
)
from tests.support.processes import serve_replicas
from tests.support.tls import Issued, issue_ca, issue_leaf

MEMBERS = [f"member-{index:02d}" for index in range(20)]
POOL = 1_500
"""Distinct email values in the forum; each is held by 1, 2, 3 or 5 members."""
HOLDERS_CHOICES = (1, 1, 2, 3, 5)
SEED = 20_261_203
CAPACITY = 2_500
"""About ten times the largest member's holdings: filters far below their design fill."""
MAX_MEMBERS = 32
MAX_FALSE_POSITIVE_MASS = 1e-9
SYNC_TIMEOUT = 90.0
KILL_AFTER = 5
"""Replica 0 is killed once this many members' submissions are stored: both replicas have
served by then, and most syncs are still in flight."""
CHECK_INTERVAL_MS = 300
REPLICA_NAME = "localhost"
"""The name HAProxy verifies each replica's certificate for (and sends as SNI)."""
START_TIMEOUT = 30.0
UP = ("UP", "L7OK")
SERVING = HealthCheckResponse.SERVING
NOT_SERVING = HealthCheckResponse.NOT_SERVING
HEALTH_PATH = b"/grpc.health.v1.Health/Check"
SERVING_MESSAGE = bytes.fromhex("00000000020801")
"""A gRPC message frame (uncompressed, length 2) of ``HealthCheckResponse{status: SERVING}``."""


def _require_haproxy() -> str:
    """HAProxy's path; skip without it, except in CI: there it is a failure."""
    found = shutil.which("haproxy", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
    if found is not None:
        return found
    reason = "the load-balancer test needs HAProxy (Debian: apt-get install haproxy)"
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the load-balancer test, but {reason}", pytrace=False)
    pytest.skip(reason)


# ---------------------------------------------------------------------------------- HAProxy


def _h2_frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    header = len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big")
    return header + payload


def _literal(name: bytes, value: bytes) -> bytes:
    """HPACK literal header field without indexing, new name, no Huffman coding."""
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


def health_check_request() -> bytes:
    """A whole HTTP/2 connection's opening that asks the gRPC health service about the server
    (service ``""``): preface, SETTINGS, HEADERS (END_HEADERS), DATA (END_STREAM)."""
    headers = (
        b"\x83"  # :method POST (static table 3)
        + b"\x86"  # :scheme http (static table 6)
        + b"\x04"  # :path, literal value (static name 4)
        + bytes([len(HEALTH_PATH)])
        + HEALTH_PATH
        + b"\x01\x03hub"  # :authority hub (static name 1)
        + _literal(b"content-type", b"application/grpc")
        + _literal(b"te", b"trailers")
    )
    empty_request = b"\x00" + (0).to_bytes(4, "big")  # uncompressed, zero-length message
    return (
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        + _h2_frame(0x4, 0x0, 0, b"")
        + _h2_frame(0x1, 0x4, 1, headers)
        + _h2_frame(0x0, 0x1, 1, empty_request)
    )


@dataclass(frozen=True)
class Pki:
    """A forum CA and the server certificates of this test, two of them for HAProxy to refuse."""

    ca: Path
    """The forum CA's certificate: members trust it for the proxy, HAProxy for the replicas."""
    proxy: Path
    """The proxy's certificate for 127.0.0.1 and its key, one PEM bundle (HAProxy's ``crt``)."""
    replica: Issued
    """The replicas' certificate for 127.0.0.1 and localhost (``serve --tls-cert``)."""
    stranger: Issued
    """The replicas' names, signed by another CA: fails ``verify required``."""
    misnamed: Issued
    """Signed by the forum CA for 127.0.0.1 and another name: fails ``verifyhost``."""


def issue_pki(directory: Path) -> Pki:
    now = datetime.now(UTC)
    ca, ca_cert, ca_key = issue_ca(directory, "forum-ca", now)
    _, other_cert, other_key = issue_ca(directory, "other-ca", now)
    loopback = x509.IPAddress(ipaddress.ip_address("127.0.0.1"))

    def server(
        stem: str,
        names: list[x509.GeneralName],
        issuer: tuple[x509.Certificate, EllipticCurvePrivateKey] = (ca_cert, ca_key),
    ) -> Issued:
        return issue_leaf(
            directory,
            stem,
            issuer=issuer,
            usage=ExtendedKeyUsageOID.SERVER_AUTH,
            san=names,
            not_before=now - timedelta(hours=1),
            not_after=now + timedelta(days=1),
        )

    replica_names: list[x509.GeneralName] = [loopback, x509.DNSName(REPLICA_NAME)]
    proxy = server("proxy", [loopback])
    return Pki(
        ca=ca.cert,
        proxy=write_private(
            directory / "proxy.pem", proxy.cert.read_text() + proxy.key.read_text()
        ),
        replica=server("replica", replica_names),
        stranger=server("stranger", replica_names, (other_cert, other_key)),
        misnamed=server("misnamed", [loopback, x509.DNSName("elsewhere.test")]),
    )


def haproxy_config(port: int, servers: list[int], stats_socket: Path, pki: Pki) -> str:
    """Members' frontend with TLS (ALPN h2); a backend of ``servers`` (loopback ports) over
    TLS and HTTP/2, each replica's certificate verified against the forum CA for the name
    ``localhost``, checked with the gRPC health service over TLS, retrying and redispatching."""
    lines = "\n".join(
        f"    server replica-{index} 127.0.0.1:{server}" for index, server in enumerate(servers)
    )
    return f"""\
global
    log stderr format raw local0 info
    stats socket {stats_socket} mode 600 level user

defaults
    mode http
    log global
    option httplog
    timeout connect 1s
    timeout client 60s
    timeout server 60s
    timeout check 1s
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response

frontend members
    bind 127.0.0.1:{port} ssl crt {pki.proxy} alpn h2 ssl-min-ver TLSv1.2
    default_backend hub

backend hub
    balance roundrobin
    option tcp-check
    tcp-check connect default
    tcp-check send-binary {health_check_request().hex()}
    tcp-check expect binary {SERVING_MESSAGE.hex()}
    default-server proto h2 check inter {CHECK_INTERVAL_MS}ms fall 2 rise 2 \
ssl verify required ca-file {pki.ca} verifyhost {REPLICA_NAME} sni str({REPLICA_NAME}) alpn h2 \
check-ssl check-sni {REPLICA_NAME} check-alpn h2 ssl-min-ver TLSv1.2
{lines}
"""


class HAProxy:
    """``haproxy -db`` in the foreground as a subprocess, with a stats socket to read."""

    def __init__(self, binary: str, directory: Path, ports: list[int], pki: Pki) -> None:
        self.port = _free_port()
        self.stats_socket = directory / "haproxy.sock"
        self.config = directory / "haproxy.cfg"
        self.ca_cert = pki.ca
        self.config.write_text(haproxy_config(self.port, ports, self.stats_socket, pki))
        self.log = directory / "haproxy.log"
        with self.log.open("wb") as sink:
            self.process = subprocess.Popen(
                [binary, "-f", str(self.config), "-db"],
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )

    def stats(self) -> dict[str, dict[str, str]]:
        """``show stat`` by server name (and ``FRONTEND``/``BACKEND``) of the hub backend."""
        with socket.socket(socket.AF_UNIX) as connection:
            connection.connect(str(self.stats_socket))
            connection.sendall(b"show stat\n")
            chunks = []
            while chunk := connection.recv(65536):
                chunks.append(chunk)
        text = b"".join(chunks).decode().removeprefix("# ")
        return {row["svname"]: row for row in csv.DictReader(io.StringIO(text))}

    def wait_until(
        self, states: dict[str, tuple[str, str]], timeout: float = START_TIMEOUT
    ) -> dict[str, dict[str, str]]:
        """Wait until each named server is in its (status, last check status), e.g.
        ``("UP", "L7OK")``: passed its health check at layer 7, the replica is SERVING."""
        deadline = time.monotonic() + timeout
        seen: dict[str, tuple[str, str]] = {}
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"haproxy exited:\n{self.log_text()}")
            with suppress(OSError):  # the stats socket appears once HAProxy runs
                stats = self.stats()
                seen = {n: (stats[n]["status"], stats[n]["check_status"]) for n in states}
                if seen == states:
                    return stats
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"servers not {states} in {timeout} s but {seen}:\n{self.log_text()}"
                )
            time.sleep(0.05)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextmanager
def running_haproxy(binary: str, directory: Path, ports: list[int], pki: Pki) -> Iterator[HAProxy]:
    proxy = HAProxy(binary, directory, ports, pki)
    try:
        yield proxy
    finally:
        proxy.stop()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# ---------------------------------------------------------------------------------- the forum


def holdings_plan() -> dict[str, list[str]]:
    """Member → the email values it holds: each pool value goes to 1, 2, 3 or 5 members."""
    rng = random.Random(SEED)
    held: dict[str, list[str]] = {name: [] for name in MEMBERS}
    for index in range(POOL):
        for holder in rng.sample(MEMBERS, rng.choice(HOLDERS_CHOICES)):
            held[holder].append(f"acct.{index:05d}@Example.org")
    return held


def oracle(held: dict[str, list[str]]) -> dict[str, dict[str, int]]:
    """Member → {canonical value: number of other holders} for its values held by ≥ 2."""
    canonicalise = get_kind(KIND).canonicalise
    holders: dict[str, set[str]] = {}
    for name, values in held.items():
        for value in values:
            holders.setdefault(canonicalise(value), set()).add(name)
    return {
        name: {
            canonicalise(v): len(holders[canonicalise(v)]) - 1
            for v in values
            if len(holders[canonicalise(v)]) >= 2
        }
        for name, values in held.items()
    }


def submitted_members(url: str) -> int:
    engine = make_engine(url)
    try:
        with session_scope(engine) as session:
            return len(SubmissionRepository(session).all_active(KIND))
    finally:
        engine.dispose()


def in_process(args: list[str], env: dict[str, str], watch: SecretWatch) -> Outcome:
    """``sigshare ARGS`` through its click group in this process (no interpreter start-up)."""
    started = time.monotonic()
    result = CliRunner().invoke(client_cli, args, env=env, catch_exceptions=False)
    outcome = Outcome(
        args=("sigshare", *args),
        returncode=result.exit_code,
        stdout=result.stdout,
        stderr=result.stderr,
        seconds=time.monotonic() - started,
    )
    watch.check(outcome.stdout + outcome.stderr, outcome.describe())
    return outcome


@contextmanager
def member_processes(
    commands: list[Command],
) -> Iterator[list[tuple[subprocess.Popen[str], float]]]:
    """The commands started at once; any still running on the way out (a failure) killed."""
    started = [start(command) for command in commands]
    try:
        yield started
    finally:
        for process, _ in started:
            if process.poll() is None:
                process.kill()
                process.communicate()


def retries_in(outcome: Outcome) -> int:
    return outcome.stderr.count("retrying in")


# ---------------------------------------------------------------------------------- the test


def test_twenty_members_sync_through_haproxy_while_a_replica_is_killed(
    postgres_server: URL, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    haproxy = _require_haproxy()
    began = time.monotonic()
    held = holdings_plan()
    expected = oracle(held)
    secret = ForumSecret(key_id=KEY_ID, secret=random.Random(SEED).randbytes(32))
    params = BloomParams.for_forum(KIND, KEY_ID, CAPACITY, FORUM_FPR, MAX_MEMBERS)
    canonicalise = get_kind(KIND).canonicalise
    rates = [filter_fpr(secret, params, map(canonicalise, values)) for values in held.values()]
    queries = sum(len(values) for values in held.values())
    false_mass = queries * sum(rates)
    assert false_mass < MAX_FALSE_POSITIVE_MASS, f"the oracle is not exact: {false_mass:.1e}"

    home = tmp_path / "home"
    home.mkdir()
    env = client_env(home)
    watch = SecretWatch()
    watch.add_forum_secret(secret)
    secret_file = write_secret_file(tmp_path / "forum.secret", secret)
    pki = issue_pki(tmp_path)
    # The replicas share one payload directory, as deployments do (the test's own engines too).
    monkeypatch.setenv(BLOB_DIR_ENV, str(tmp_path / "blobs"))
    with fresh_postgres_database(postgres_server) as server_url:
        url = server_url.render_as_string(hide_password=False)
        credentials = provision_members(url, MEMBERS, CAPACITY)
        with (
            serve_replicas(url, tmp_path, 2, tls=(pki.replica.cert, pki.replica.key)) as replicas,
            running_haproxy(haproxy, tmp_path, [r.port for r in replicas], pki) as proxy,
        ):
            names = [f"replica-{index}" for index in range(len(replicas))]
            proxy.wait_until(dict.fromkeys(names, UP))
            configs = {}
            commands = []
            for name in MEMBERS:
                watch.add_credential(name, credentials[name])
                configs[name] = write_config(
                    tmp_path / f"{name}.toml",
                    hub=f"127.0.0.1:{proxy.port}",
                    credential_file=write_private(
                        tmp_path / f"{name}.cred", credentials[name] + "\n"
                    ),
                    secret_file=secret_file,
                    state_dir=tmp_path / f"state-{name}",
                    retries=5,
                    timeout_seconds=20.0,
                    extra={"insecure": False, "ca_cert": str(proxy.ca_cert)},
                )
                csv_path = write_emails(tmp_path / f"{name}.csv", held[name])
                commands.append(
                    Command(
                        ["sync", "--json", "--config", str(configs[name]), str(csv_path)],
                        env,
                        tmp_path,
                    )
                )

            with member_processes(commands) as started:
                wave_began = time.monotonic()
                while submitted_members(url) < KILL_AFTER:
                    assert time.monotonic() - wave_began < SYNC_TIMEOUT, "too few submissions"
                    time.sleep(0.02)
                killed_at = time.monotonic() - wave_began
                os.kill(replicas[0].process.pid, signal.SIGKILL)
                assert replicas[0].process.wait(10) == -signal.SIGKILL
                submitted_at_kill = submitted_members(url)
                running_at_kill = sum(process.poll() is None for process, _ in started)
                syncs = [finish(process, at, watch, SYNC_TIMEOUT) for process, at in started]
                wave_seconds = time.monotonic() - wave_began

            sdk_retries = sum(retries_in(outcome) for outcome in syncs)
            after = proxy.stats()
            figures = (
                f"set up in {wave_began - began:.1f} s; "
                f"{len(syncs)} syncs in {wave_seconds:.1f} s; replica-0 SIGKILLed "
                f"{killed_at:.2f} s in, with {submitted_at_kill} of {len(MEMBERS)} members "
                f"submitted and {running_at_kill} syncs running; {sdk_retries} SDK retries, "
                f"HAProxy retries {after['BACKEND']['wretr']}, redispatches "
                f"{after['BACKEND']['wredis']}; requests per replica "
                + ", ".join(f"{n} {after[n]['stot']}" for n in names)
            )
            failed = [o.describe() + "\n" + o.stderr for o in syncs if o.returncode != 0]
            assert not failed, f"{figures}\nfailed syncs:\n" + "\n".join(failed)
            assert running_at_kill > 0, f"the replica was killed after the run: {figures}"
            assert submitted_at_kill < len(MEMBERS), f"killed after the run: {figures}"
            assert int(after["replica-0"]["stot"]) > 0, f"replica-0 never served: {figures}"
            proxy.wait_until({"replica-0": ("DOWN", "L4CON"), "replica-1": UP}, 1.0)

            # Every filter is in now: one more pull per member through the proxy, then what
            # each member has learnt, against the oracle.
            pulls = [
                in_process(["pull", "--json", "--config", str(configs[n])], env, watch).ok()
                for n in MEMBERS
            ]
            figures += (
                f"; {len(pulls)} final pulls in {sum(o.seconds for o in pulls):.1f} s with "
                f"{sum(retries_in(o) for o in pulls)} retries"
            )
            for name in MEMBERS:
                document = in_process(
                    ["matches", "--json", "--config", str(configs[name])], env, watch
                ).ok()
                indicators = document.json()["indicators"]
                found = {canonicalise(i["value"]): i["other_members"] for i in indicators}
                assert len(found) == len(indicators), f"{name}: a value is listed twice"
                assert found == expected[name], (
                    f"{name}: answers differ from the oracle ({figures})"
                )

        latest = {}
        for name in MEMBERS:
            with LocalState.open(tmp_path / f"state-{name}") as state:
                record = state.sketch(KIND)
            assert record is not None, f"{name} has no local {KIND} sketch"
            latest[name] = record.payload
        recomputed = check_hub(url, latest)
        assert set(recomputed.filters) == set(MEMBERS)
        # The killed replica left no submission without its file, and nothing but what a
        # sweep removes (an upload it was receiving): afterwards exactly the referenced files.
        engine = make_engine(url)
        try:
            census = payloads.census(engine)
            assert census is not None
            assert census.missing == frozenset()
            assert len(census.referenced) == len(MEMBERS)
            payloads.sweep(engine, grace_seconds=0)  # the replicas are stopped
            swept = payloads.census(engine)
            assert swept is not None
            assert swept.present == swept.referenced
            assert swept.staged == 0
        finally:
            engine.dispose()
    total = time.monotonic() - began
    print(f"{figures}; {total:.1f} s in all")


def test_the_health_check_passes_only_a_serving_answer(tmp_path: Path) -> None:
    """Four gRPC servers with the standard health service over TLS: SERVING and NOT_SERVING
    with the replicas' certificate, and SERVING with another CA's certificate for the same
    names and with the forum CA's for another name. The first is UP, the second DOWN (the
    check reads no SERVING answer), the last two DOWN in the check's TLS handshake (``verify
    required``, ``verifyhost``), each for its own reason. When the first two swap, so do their
    states."""
    haproxy = _require_haproxy()
    pki = issue_pki(tmp_path)
    plan = [
        (SERVING, pki.replica),
        (NOT_SERVING, pki.replica),
        (SERVING, pki.stranger),
        (SERVING, pki.misnamed),
    ]
    servicers = []
    servers = []
    ports = []
    try:
        for status, issued in plan:
            server = grpc.server(ThreadPoolExecutor(max_workers=2))
            servicer = health.HealthServicer()
            health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
            servicer.set("", status)
            credentials = grpc.ssl_server_credentials(
                [(issued.key.read_bytes(), issued.cert.read_bytes())]
            )
            ports.append(server.add_secure_port("127.0.0.1:0", credentials))
            server.start()
            servers.append(server)
            servicers.append(servicer)
        refused = dict.fromkeys(("replica-2", "replica-3"), ("DOWN", "L6RSP"))
        with running_haproxy(haproxy, tmp_path, ports, pki) as proxy:
            proxy.wait_until({"replica-0": UP, "replica-1": ("DOWN", "L7TOUT"), **refused})
            servicers[0].set("", NOT_SERVING)
            servicers[1].set("", SERVING)
            stats = proxy.wait_until({"replica-0": ("DOWN", "L7TOUT"), "replica-1": UP, **refused})
        reasons = {
            "replica-2": "SSL handshake failure",  # an unknown CA
            "replica-3": "Server presented an SSL certificate different from the expected one",
        }
        for name, reason in reasons.items():
            assert stats[name]["last_chk"] == f"{reason} at step 1 of tcp-check (connect)", name
    finally:
        for server in servers:
            server.stop(None)


def test_the_deploy_guide_shows_the_health_check_this_test_runs() -> None:
    """deploy/README.md gives operators the check's bytes: the very ones tested above."""
    guide = (Path(__file__).resolve().parents[3] / "deploy" / "README.md").read_text()
    assert health_check_request().hex() in guide
    assert f"tcp-check expect binary {SERVING_MESSAGE.hex()}" in guide
