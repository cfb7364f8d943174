"""One ``bash -euo pipefail`` session that runs a guide's blocks one after the other, as a reader
types them into one terminal: the working directory, exported variables, the umask and
background jobs (``serve … &`` in one block, ``kill %1`` in a later one) carry over.

The session reads its commands from a pipe; each block is a script it ``source``s (with stdin
from ``/dev/null``, so a command reading stdin cannot eat the next block), followed by a
sentinel line that marks the end of the block's output in the session's log. A failing command
ends the session (``set -e``), and with it the guide's run. The session and everything it
started share one process group, which :meth:`ShellSession.close` ends.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

POLL_SECONDS = 0.05
STOP_SECONDS = 30.0


@dataclass(frozen=True)
class Outcome:
    """How a block ended, and what it printed."""

    output: str
    """stdout and stderr of the block, interleaved as on a terminal."""
    exit_code: int | None
    """The session's exit status if the block ended it (a command failed), else ``None``."""
    timed_out: bool = False


class ShellSession:
    """``bash -euo pipefail`` in ``cwd`` with environment ``env``; its scripts and log live in
    ``scratch`` (outside ``cwd``, so that a guide's commands never see them)."""

    def __init__(self, cwd: Path, scratch: Path, env: Mapping[str, str]) -> None:
        self._scratch = scratch
        self._log = scratch / "session.log"
        self._sentinel = f"docs-test-{secrets.token_hex(8)}"
        self._count = 0
        scratch.mkdir(parents=True, exist_ok=True)
        with self._log.open("wb") as log:
            self.process = subprocess.Popen(
                ["bash", "--noprofile", "--norc", "-euo", "pipefail"],
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def run(self, script: str, timeout: float) -> Outcome:
        """Run ``script`` in the session and return its output once it is done."""
        self._count += 1
        path = self._scratch / f"block-{self._count}.sh"
        path.write_text(script, encoding="utf-8")
        end = f"{self._sentinel} {self._count}"
        start = self._log.stat().st_size
        command = f"source {shlex.quote(str(path))} </dev/null\nprintf '\\n%s\\n' '{end}'\n"
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(command.encode())
            self.process.stdin.flush()
        except BrokenPipeError:
            pass  # the session has ended; the loop below reports how
        deadline = time.monotonic() + timeout
        while True:
            output = self._read(start)
            done = output.find(f"\n{end}\n")
            if done >= 0:
                return Outcome(output[:done], None)
            if self.process.poll() is not None:
                return Outcome(self._read(start), self.process.returncode)
            if time.monotonic() > deadline:
                return Outcome(output, None, timed_out=True)
            time.sleep(POLL_SECONDS)

    def close(self) -> None:
        """End the session, then whatever it left running (servers started with ``&``)."""
        group = self.process.pid
        if self.process.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                self.process.stdin.close()
        try:
            self.process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        _end_group(group)

    def _read(self, start: int) -> str:
        with self._log.open("rb") as log:
            log.seek(start)
            return log.read().decode("utf-8", errors="replace")


def _end_group(group: int) -> None:
    """SIGTERM to process group ``group``, SIGKILL to any member still running a while later."""
    try:
        os.killpg(group, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_SECONDS
    while _running(group) and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
    if _running(group):
        os.killpg(group, signal.SIGKILL)


def _running(group: int) -> bool:
    """Whether a process of ``group`` runs: one that is not a zombie, which whoever inherited it
    may never reap (Linux ``/proc``)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # ended meanwhile
        if int(fields[2]) == group and fields[0] != "Z":
            return True
    return False
