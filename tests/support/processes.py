"""The hub as ``sigshare-hub serve`` (or ``web``) processes on loopback, for tests and
benchmarks: any command line started and waited for until it serves, replicas sharing one
database, and a single hub that a test can kill (``kill -9``) and restart on the same port.
Each process writes its output to a log file of the caller's (``<name>.log``) and announces its
port in the port file beside it (``<name>.port``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sigshare.client.hub_client import HubClient, HubConnection, RetryPolicy

BIN = Path(sys.executable).parent
START_TIMEOUT = 60.0
INSECURE = ("--insecure",)
"""Plaintext gRPC, allowed on loopback."""


def start_hub_command(
    args: Sequence[str],
    log: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> tuple[subprocess.Popen[bytes], Path]:
    """Start ``sigshare-hub ARGS --port-file PORT_FILE`` in the background, its stdout and
    stderr in ``log``; the process and its port file (``log`` with the suffix ``.port``).

    ``env``: the process's whole environment (default: this one's).
    """
    port_file = log.with_suffix(".port")
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(BIN / "sigshare-hub"), *args, "--port-file", str(port_file)],
            cwd=cwd,
            env=None if env is None else dict(env),
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    return process, port_file


def wait_for_port(process: subprocess.Popen[Any], port_file: Path, deadline: float) -> int:
    """The port the hub announced in ``port_file``, once written in full (its line ends); the
    log beside it (suffix ``.log``) in the error if the process exited or did not announce one
    by ``deadline`` (``time.monotonic()``)."""
    while not (port_file.exists() and port_file.read_text().endswith("\n")):
        if process.poll() is not None or time.monotonic() > deadline:
            log = port_file.with_suffix(".log").read_text(errors="replace")
            raise RuntimeError(f"the hub did not start (exit {process.poll()}):\n{log}")
        time.sleep(0.02)
    return int(port_file.read_text())


@contextmanager
def hub_command_serving(
    args: Sequence[str],
    log: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """:func:`start_hub_command`, once the process serves: the process and its port. Killed on
    exit if still running (a test that checks the graceful stop sends SIGTERM itself)."""
    process, port_file = start_hub_command(args, log, env=env, cwd=cwd)
    try:
        yield process, wait_for_port(process, port_file, time.monotonic() + START_TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
        _reap(process)


def spawn_hub(
    url: str,
    directory: Path,
    name: str,
    *,
    listen: str = "127.0.0.1:0",
    transport: Sequence[str] = INSECURE,
    env: Mapping[str, str] | None = None,
) -> tuple[subprocess.Popen[bytes], Path]:
    """Start ``sigshare-hub --db URL serve`` on ``listen``, logging to ``<directory>/<name>.log``;
    the process and its port file.

    ``transport``: ``--insecure`` or the TLS options. ``env``: the process's whole environment
    (default: this one's).
    """
    return start_hub_command(
        ["--db", url, "serve", "--listen", listen, *transport, "--log-level", "warning"],
        directory / f"{name}.log",
        env=env,
    )


def _reap(process: subprocess.Popen[bytes]) -> None:
    """Wait for a terminated process; SIGKILL if it has not exited 30 s later."""
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, and SIGKILL if the process has not exited 30 s later."""
    if process.poll() is not None:
        return
    process.terminate()
    _reap(process)


@dataclass(frozen=True)
class Replica:
    port: int
    process: subprocess.Popen[bytes]

    def peak_rss_mib(self) -> float:
        """The process's peak resident memory so far (Linux ``VmHWM``)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")


@contextmanager
def serve_replicas(
    url: str,
    directory: Path,
    count: int,
    *,
    tls: tuple[Path, Path] | None = None,
    env: Mapping[str, str] | None = None,
) -> Iterator[list[Replica]]:
    """``count`` hub processes on one database (logs in ``directory``), stopped on exit.

    Plaintext gRPC on loopback (``--insecure``) by default; with ``tls`` (certificate file, key
    file) each serves TLS with them (``--tls-cert``/``--tls-key``), as replicas behind a load
    balancer that verifies them do. ``env``: the processes' whole environment (default: this
    one's).
    """
    transport = INSECURE if tls is None else ("--tls-cert", str(tls[0]), "--tls-key", str(tls[1]))
    processes: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        for index in range(count):
            processes.append(
                spawn_hub(url, directory, f"replica-{index}", transport=transport, env=env)
            )
        deadline = time.monotonic() + START_TIMEOUT
        yield [
            Replica(wait_for_port(process, port_file, deadline), process)
            for process, port_file in processes
        ]
    finally:
        for process, _ in processes:
            process.terminate()
        for process, _ in processes:
            _reap(process)


class HubProcess:
    """One ``sigshare-hub serve`` process; restarted on the same port after a kill."""

    def __init__(self, url: str, directory: Path) -> None:
        self.url = url
        self.directory = directory
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.starts += 1
        self.process, port_file = spawn_hub(
            self.url, self.directory, f"hub-{self.starts}", listen=self.target
        )
        try:
            self.port = wait_for_port(self.process, port_file, time.monotonic() + START_TIMEOUT)
        except RuntimeError:
            self.stop()
            raise

    def kill(self) -> None:
        """``kill -9``."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(30)
        assert self.process.returncode == -signal.SIGKILL

    def cpu_seconds(self) -> float:
        """User + system CPU time the hub process has used so far."""
        assert self.process is not None
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rpartition(")")[2].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)

    def client(self, credential: str, target: str | None = None) -> HubClient:
        """The member SDK without retries, to this hub or to ``target`` (a proxy in front)."""
        return HubClient(
            HubConnection(target=target or self.target, credential=credential, insecure=True),
            retry=RetryPolicy(attempts=1),
        )
