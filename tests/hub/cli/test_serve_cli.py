"""``sigshare-hub serve`` end to end: the real console script in subprocesses, as an operator runs
it — provision with `db upgrade`, `member add` and `params set`, serve in the background on a
free loopback port, probe health, call it with the member SDK (submit a filter and resolve its
tokens), read its JSON logs, stop it with SIGTERM. Plus the refusals that happen before anything
listens."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from click.testing import CliRunner
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sigshare.client.errors import HubAuthError
from sigshare.client.exit_codes import ExitCode
from sigshare.client.hub_client import HubClient, HubConnection, RetryPolicy, Timeouts
from sigshare.client.hub_types import TokenStatus
from sigshare.hub.cli import cli
from sigshare.hub.storage.database import DATABASE_URL_ENV
from sigshare.sketch.bloom import KeyedBloomFilter
from sigshare.sketch.codec import encode_bloom
from sigshare.sketch.keys import ForumSecret, KeyPurpose
from sigshare.sketch.prf import KeyedPRF, tokens_to_bytes
from tests.support.processes import hub_command_serving

HUB = Path(sys.executable).with_name("sigshare-hub")
"""The installed console script, next to this interpreter in the virtualenv."""
COMMAND_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0
KEY_ID = "k1"
MEMBER_SERVICE = "sigshare.v1.MemberService"


def _environment() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != DATABASE_URL_ENV}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def hub(url: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``sigshare-hub --db URL ARGS``, run to completion."""
    return subprocess.run(
        [str(HUB), "--db", url, *args],
        cwd=cwd,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )


def succeeded(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"{result.args} exited {result.returncode}:\n{result.stderr}"
    return result


@dataclass(frozen=True)
class Provisioned:
    directory: Path
    url: str
    credential: str


@pytest.fixture(scope="module")
def provisioned(tmp_path_factory: pytest.TempPathFactory) -> Provisioned:
    """A hub database built by the CLI alone: migrated, one member, ``email`` published."""
    assert HUB.exists(), f"console script not installed at {HUB}"
    directory = tmp_path_factory.mktemp("serve")
    url = f"sqlite:///{directory / 'hub.db'}"
    succeeded(hub(url, "db", "upgrade", cwd=directory))
    added = succeeded(hub(url, "member", "add", "acme", cwd=directory))
    credential = added.stdout.strip()
    assert credential, added.stderr
    assert "\n" not in credential, added.stdout
    succeeded(
        hub(
            url,
            "params",
            "set",
            "email",
            "--key-id",
            KEY_ID,
            "--capacity",
            "1000",
            "--fpr",
            "0.001",
            cwd=directory,
        )
    )
    return Provisioned(directory=directory, url=url, credential=credential)


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    """The process's stderr and stdout."""

    def log_lines(self) -> list[str]:
        return [line for line in self.log.read_text().splitlines() if line.strip()]


@pytest.fixture
def served(provisioned: Provisioned, tmp_path: Path) -> Iterator[Served]:
    """``serve --insecure`` on a free loopback port, in the background; killed if still running."""
    log = tmp_path / "serve.log"
    with hub_command_serving(
        [
            *("--db", provisioned.url, "serve", "--insecure", "--listen", "127.0.0.1:0"),
            "--log-json",
            # No cache at all: every Resolve builds its membership index afresh.
            *("--index-cache-mib", "0"),
        ],
        log,
        env=_environment(),
        cwd=provisioned.directory,
    ) as (process, port):
        yield Served(process, port, log)


def _health(port: int, service: str) -> int:
    """The health status of ``service`` ("" for the server), asked without any credential."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)  # the generated stub is untyped
        response = stub.Check(
            health_pb2.HealthCheckRequest(service=service), timeout=10.0, wait_for_ready=True
        )
    return int(response.status)


def _sdk(port: int, credential: str) -> HubClient:
    return HubClient(
        HubConnection(target=f"127.0.0.1:{port}", credential=credential, insecure=True),
        retry=RetryPolicy(attempts=1),
        timeouts=Timeouts(unary=10.0),
    )


def test_serve_end_to_end(provisioned: Provisioned, served: Served) -> None:
    # Health needs no credential: load balancers probe it bare.
    assert _health(served.port, "") == health_pb2.HealthCheckResponse.SERVING
    assert _health(served.port, MEMBER_SERVICE) == health_pb2.HealthCheckResponse.SERVING

    values = [f"user{i:03d}@example.com" for i in range(50)]
    secret = ForumSecret(key_id=KEY_ID, secret=bytes(range(32)))
    prf = KeyedPRF(secret.derive(KeyPurpose.BLOOM_TOKEN, "email"))
    with _sdk(served.port, provisioned.credential) as member:
        published = member.get_parameters()
        assert set(published.bloom) == {"email"}
        email = published.bloom["email"]
        assert (email.key_id, email.forum_fpr, email.max_members) == (KEY_ID, 0.001, 32)
        bloom = KeyedBloomFilter(email.bloom_params(), prf)
        bloom.add(values)
        member.submit(
            sketch_format="bloom",
            kind="email",
            key_id=KEY_ID,
            params_digest=email.digest,
            declared_count=bloom.count,
            payload=encode_bloom(bloom),
        )
        tokens = b"".join(tokens_to_bytes(prf.tokens(values)))
        answers = [member.resolve("email", KEY_ID, tokens) for _ in range(2)]
    for result in answers:  # the only member: every value answered, nobody else holds it
        assert (result.members, result.quorum) == (1, 2)
        assert result.status.tolist() == [TokenStatus.ANSWERED] * len(values)
        assert result.others.tolist() == [0] * len(values)
        assert (result.submission_tokens, result.submission_budget) == (50, 50)

    wrong = "sgs1_0000000000000000_not-a-credential-of-this-hub"
    with _sdk(served.port, wrong) as stranger, pytest.raises(HubAuthError):
        stranger.get_parameters()

    served.process.send_signal(signal.SIGTERM)
    started = time.monotonic()
    served.process.wait(timeout=STOP_TIMEOUT)
    assert served.process.returncode == 0, "\n".join(served.log_lines())
    assert time.monotonic() - started < STOP_TIMEOUT

    lines = served.log_lines()
    records: list[dict[str, Any]] = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"a log line is not JSON: {line!r}")
    for record in records:
        assert {"time", "level", "logger", "message"} <= record.keys(), record
    messages = [record["message"] for record in records]
    assert any(f"port={served.port}" in m and "serving" in m for m in messages), messages
    assert any("GetParameters" in m and "principal=acme" in m for m in messages), messages
    assert sum("Resolve" in m and "principal=acme" in m for m in messages) == 2, messages
    assert any("bad-credential" in m for m in messages), messages
    assert messages[-1] == "stopped", messages
    everything = served.log.read_text()
    assert provisioned.credential not in everything
    assert wrong not in everything
    secret_part = provisioned.credential.split("_", 2)[2]  # the secret may contain "_"
    assert secret_part not in everything


# ----------------------------------------------------------------- refusals before listening


@dataclass(frozen=True)
class Refusal:
    result: subprocess.CompletedProcess[str]
    port_file: Path


@pytest.fixture(scope="module")
def refusals(
    provisioned: Provisioned, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Refusal]:
    """Every refused `serve`, run concurrently (each is mostly interpreter start-up), by case."""
    directory = tmp_path_factory.mktemp("refusals")
    empty = directory / "empty.db"
    empty.touch()  # an SQLite database without a single table: never migrated
    cases = {
        "unmigrated": (f"sqlite:///{empty}", ["--insecure", "--listen", "127.0.0.1:0"]),
        "off-loopback": (provisioned.url, ["--listen", "0.0.0.0:0", "--insecure"]),
        "cert-without-key": (
            provisioned.url,
            ["--listen", "127.0.0.1:0", "--tls-cert", str(directory / "hub.crt")],
        ),
        "negative-index-cache": (
            provisioned.url,
            ["--insecure", "--listen", "127.0.0.1:0", "--index-cache-mib", "-1"],
        ),
    }
    started = {}
    for case, (url, options) in cases.items():
        port_file = directory / f"{case}.port"
        command = [str(HUB), "--db", url, "serve", *options, "--port-file", str(port_file)]
        process = subprocess.Popen(
            command,
            cwd=directory,
            env=_environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started[case] = (process, port_file)
    refused = {}
    for case, (process, port_file) in started.items():
        try:
            stdout, stderr = process.communicate(timeout=COMMAND_TIMEOUT)
        except subprocess.TimeoutExpired:
            for other, _ in started.values():
                other.kill()
            raise
        result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
        refused[case] = Refusal(result, port_file)
    return refused


def test_serve_refuses_an_unmigrated_database(refusals: dict[str, Refusal]) -> None:
    refusal = refusals["unmigrated"]
    assert refusal.result.returncode == 3, refusal.result.stderr  # ExitCode.CONFIG
    assert "db upgrade" in refusal.result.stderr
    assert "Traceback" not in refusal.result.stderr
    assert not refusal.port_file.exists()


def test_serve_refuses_plaintext_off_loopback(refusals: dict[str, Refusal]) -> None:
    refusal = refusals["off-loopback"]
    assert refusal.result.returncode != 0
    assert refusal.result.returncode == ExitCode.INPUT, refusal.result.stderr
    assert "loopback" in refusal.result.stderr
    assert "Traceback" not in refusal.result.stderr
    assert not refusal.port_file.exists()


def test_tls_cert_without_key_is_a_usage_error(refusals: dict[str, Refusal]) -> None:
    refusal = refusals["cert-without-key"]
    assert refusal.result.returncode == 2, refusal.result.stderr  # ExitCode.USAGE (click's)
    assert "--tls-key" in refusal.result.stderr
    assert not refusal.port_file.exists()


def test_a_negative_index_cache_is_a_usage_error(refusals: dict[str, Refusal]) -> None:
    refusal = refusals["negative-index-cache"]
    assert refusal.result.returncode == ExitCode.USAGE, refusal.result.stderr
    assert refusal.result.stdout == ""
    assert refusal.result.stderr.endswith(
        "Error: Invalid value for '--index-cache-mib': -1 is not in the range x>=0.\n"
    )
    assert not refusal.port_file.exists()


def test_serve_help_documents_the_index_cache() -> None:
    result = CliRunner().invoke(cli, ["serve", "--help"])
    assert result.exit_code == 0, result.output
    flowing = " ".join(result.stdout.split())
    assert (
        "--index-cache-mib INTEGER RANGE Memory for cached membership indexes (per kind: "
        "m × ⌈members/8⌉ bytes, rounded up to 1, 2, 4 or a multiple of 8); 0 rebuilds the index "
        "for every request. [default: 1024; x>=0]"
    ) in flowing
