"""``sigshare-hub serve`` processes on loopback for benchmarks: started, awaited, stopped."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent
START_TIMEOUT = 60.0


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
    transport = (
        ["--insecure"] if tls is None else ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
    )
    processes: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        for index in range(count):
            port_file = directory / f"replica-{index}.port"
            log = (directory / f"replica-{index}.log").open("wb")
            process = subprocess.Popen(
                [
                    str(BIN / "sigshare-hub"),
                    "--db",
                    url,
                    "serve",
                    "--listen",
                    "127.0.0.1:0",
                    *transport,
                    "--port-file",
                    str(port_file),
                    "--log-level",
                    "warning",
                ],
                env=None if env is None else dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            log.close()
            processes.append((process, port_file))
        replicas = []
        deadline = time.monotonic() + START_TIMEOUT
        for process, port_file in processes:
            while not (port_file.exists() and port_file.read_text().strip()):
                if process.poll() is not None or time.monotonic() > deadline:
                    log_text = port_file.with_suffix(".log").read_text(errors="replace")
                    raise RuntimeError(f"hub replica did not start:\n{log_text}")
                time.sleep(0.05)
            replicas.append(Replica(int(port_file.read_text()), process))
        yield replicas
    finally:
        for process, _ in processes:
            process.terminate()
        for process, _ in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
