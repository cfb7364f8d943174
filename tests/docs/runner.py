"""Running a guide's blocks: one bash session (:mod:`tests.docs.shell`) per guide, a set-up
script first, then every block in order as :mod:`tests.docs.blocks` marks it, each after the
guide's substitutions. The first failure fails the test with the guide, the line, the block as
run and its output.

The session starts in ``<directory>/work`` with ``HOME`` at ``<directory>/home``, the
virtualenv's console scripts (``sigshare``, ``sigshare-hub``) first on the ``PATH``, and none of
the caller's ``SIGSHARE_*``, ``XDG_*`` or ``GRPC_*`` variables. A block that starts a server with
``--port-file FILE`` is done once the server has written its port there.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.docs.blocks import Block, Treatment, missing_output, parse_guide
from tests.docs.shell import Outcome, ShellSession
from tests.support.processes import START_TIMEOUT

BIN = Path(sys.executable).parent
BLOCK_TIMEOUT = 120.0
PORT_FILE = re.compile(r"--port-file (\S+)")
REPORT_LINES = 80
"""How much of a failed block's output a report shows: its end."""


@dataclass
class Substitution:
    """One change made to every block of a guide before it runs, and how often it applied."""

    pattern: re.Pattern[str]
    replacement: str | Callable[[], str]
    """The new text, or what computes it when it is first needed (once)."""
    uses: int = 0

    @classmethod
    def literal(cls, old: str, new: str) -> Substitution:
        return cls(re.compile(re.escape(old)), new)

    @classmethod
    def word(cls, old: str, new: str | Callable[[], str]) -> Substitution:
        """``old`` as a whole word only (a placeholder such as ``ID``)."""
        return cls(re.compile(rf"\b{re.escape(old)}\b"), new)

    def apply(self, text: str) -> str:
        if not self.pattern.search(text):
            return text
        if callable(self.replacement):
            self.replacement = self.replacement()
        new = self.replacement
        changed, count = self.pattern.subn(lambda _: new, text)
        self.uses += count
        return changed


@dataclass
class Plan:
    """What a guide needs around its blocks."""

    setup: str
    """Shell commands run first, in the same session: what the guide assumes the reader has."""
    substitutions: list[Substitution]
    """Applied in order to every block before it runs."""
    env: dict[str, str] = field(default_factory=dict)
    tools: Sequence[str] = ()
    """Programs beyond Python and bash that the guide's commands use (e.g. ``jq``)."""

    def prepare(self, text: str) -> str:
        for substitution in self.substitutions:
            text = substitution.apply(text)
        return text


def run_guide(path: Path, plan: Plan, directory: Path) -> None:
    """Run the guide at ``path`` as ``plan`` says, in ``directory``; fail the test at the first
    block that fails, and if a substitution of ``plan`` changed no block."""
    for tool in plan.tools:
        _require(tool)
    parsed = parse_guide(path)
    assert parsed.problems == ()
    work, home = directory / "work", directory / "home"
    work.mkdir()
    home.mkdir()
    session = ShellSession(work, directory / "session", _environment(home, plan.env))
    run = _GuideRun(session, plan)
    try:
        if plan.setup:
            run.run(None, plan.setup)
        for block in parsed.blocks:
            if block.treatment is Treatment.RUN:
                run.command_block(block)
            elif block.treatment in (Treatment.OUTPUT, Treatment.OUTPUT_AGAIN):
                run.output_block(block)
    finally:
        session.close()
    unused = [s.pattern.pattern for s in plan.substitutions if s.uses == 0]
    assert not unused, f"substitutions no block of {path.name} uses any more: {unused}"


def _require(tool: str) -> None:
    """Skip without ``tool``, except in CI: there it is a failure."""
    if shutil.which(tool) is not None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{tool} is required in CI (.ci/run installs it)", pytrace=False)
    pytest.skip(f"the guide's commands use {tool}, which is not installed")


def _environment(home: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("SIGSHARE_", "XDG_", "GRPC_"))
    }
    env.update(HOME=str(home), PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", **extra)
    return env


def _report(block: Block | None, script: str, outcome: Outcome, problem: str) -> str:
    """Where a block failed and how: the guide and line, the block after substitution, and the
    end of its output."""
    where = f"{block.where} ({block.language} block)" if block else "the guide's set-up"
    lines = outcome.output.rstrip().splitlines()
    shown = "\n".join(lines[-REPORT_LINES:])
    cut = f" (its last {REPORT_LINES} of {len(lines)} lines)" if len(lines) > REPORT_LINES else ""
    return (
        f"{where}: {problem}\n--- the block as run:\n{script.rstrip()}\n--- output{cut}:\n{shown}"
    )


class _GuideRun:
    """The blocks of one guide in one session, and the last command block run (for the output
    blocks that follow it)."""

    def __init__(self, session: ShellSession, plan: Plan) -> None:
        self.session = session
        self.plan = plan
        self.last: tuple[Block, str, Outcome] | None = None

    def run(self, block: Block | None, script: str) -> Outcome:
        outcome = self.session.run(script, BLOCK_TIMEOUT)
        if outcome.timed_out:
            pytest.fail(_report(block, script, outcome, f"still running after {BLOCK_TIMEOUT} s"))
        if outcome.exit_code is not None:
            pytest.fail(_report(block, script, outcome, f"failed: exit {outcome.exit_code}"))
        for port_file in PORT_FILE.findall(script):
            self._await_port(block, script, outcome, Path(port_file))
        return outcome

    def _await_port(self, block: Block | None, script: str, outcome: Outcome, path: Path) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not (path.exists() and path.read_text().endswith("\n")):
            if time.monotonic() > deadline:
                problem = f"the server it started did not announce its port in {path}"
                pytest.fail(_report(block, script, outcome, problem))
            time.sleep(0.05)

    def command_block(self, block: Block) -> None:
        if block.language != "console":
            script = self.plan.prepare(block.text)
            self.last = (block, script, self.run(block, script))
            return
        for step in block.steps():
            script = self.plan.prepare(step.command) + "\n"
            outcome = self.run(block, script)
            self._check(block, "\n".join(step.expected), script, outcome)
            self.last = (block, script, outcome)

    def output_block(self, block: Block) -> None:
        assert self.last is not None, f"{block.where}: no block ran before it"
        source, script, outcome = self.last
        if block.treatment is Treatment.OUTPUT_AGAIN:
            outcome = self.run(source, script)
        self._check(source, block.text, script, outcome, shown_at=block)

    def _check(
        self,
        block: Block,
        expected: str,
        script: str,
        outcome: Outcome,
        shown_at: Block | None = None,
    ) -> None:
        missing = missing_output(expected, outcome.output)
        if missing is not None:
            shown = f" (shown at {shown_at.where})" if shown_at else ""
            problem = f"its output lacks the line{shown}\n    {missing}\n--- expected:\n{expected}"
            pytest.fail(_report(block, script, outcome, problem))
