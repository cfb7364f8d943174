"""``sigshare-hub health``: the probe that containers, systemd and scripts use."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2

from sigshare.hub.storage import make_engine
from tests.support.hub import RunningHub, provision, running_hub

HUB = Path(sys.executable).with_name("sigshare-hub")


@pytest.fixture
def hub(
    tmp_path_factory: pytest.TempPathFactory, migrated_sqlite_template: bytes
) -> Iterator[RunningHub]:
    path = tmp_path_factory.mktemp("database") / "hub.db"
    path.write_bytes(migrated_sqlite_template)
    engine = make_engine(f"sqlite:///{path}")
    try:
        with running_hub(engine, provision(engine)) as running:
            yield running
    finally:
        engine.dispose()


def health(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(HUB), "health", *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=cwd,
        check=False,
    )


def test_a_serving_hub_answers_serving(hub: RunningHub, tmp_path: Path) -> None:
    result = health("--insecure", "--addr", hub.target, cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        f"{hub.target}: SERVING\n",
        "",
    )
    # No database was needed or created: the probe only speaks to the hub.
    assert list(tmp_path.iterdir()) == []


def test_a_hub_shutting_down_is_not_serving(hub: RunningHub, tmp_path: Path) -> None:
    hub.server.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    result = health("--insecure", "--addr", hub.target, cwd=tmp_path)
    assert (result.returncode, result.stderr) == (1, f"{hub.target}: NOT_SERVING\n")


def test_an_unreachable_hub_fails_within_the_timeout(tmp_path: Path) -> None:
    result = health("--insecure", "--addr", "127.0.0.1:1", "--timeout", "2", cwd=tmp_path)
    assert (result.returncode, result.stderr) == (1, "127.0.0.1:1: not serving (UNAVAILABLE)\n")


def test_tls_is_expected_unless_insecure_on_loopback(hub: RunningHub, tmp_path: Path) -> None:
    # Without --insecure the probe speaks TLS, which the plaintext test hub does not.
    assert health("--addr", hub.target, "--timeout", "2", cwd=tmp_path).returncode == 1
    refused = health("--insecure", "--addr", "192.0.2.1:7443", cwd=tmp_path)
    assert refused.returncode == 2
    assert "--insecure is only allowed for a loopback address" in refused.stderr
    unpaired = health("--tls-cert", str(HUB), "--addr", hub.target, cwd=tmp_path)
    assert unpaired.returncode == 2
    assert "--tls-cert and --tls-key go together" in unpaired.stderr
