"""The fenced code blocks of a Markdown guide, and the ``docs-test`` markers that tell the docs
test what to do with each.

A command block (```` ```bash ````, ``sh``, ``shell`` or ``console``) is run, unless the line
just before its opening fence marks it::

    <!-- docs-test: skip (needs systemd) -->

so a new command block is run by default and a writer has to say why one cannot be. In a
``console`` block, lines starting with ``$ `` are commands (continued while a line ends with
``\\``) and the lines after each are output the command must print.

A block without a language that shows what a command prints may be checked too:

- ``<!-- docs-test: output of the block above -->``: its lines appear, in order, in the output
  of the last command block run before it;
- ``<!-- docs-test: output of the block above, run again -->``: the same, after running that
  block a second time, for a guide that has the reader repeat it.

In expected output, ``…`` stands for any text within a line. Anything else — a marker that is
not directly before a fence, one this module does not know, a skip without a reason, or a block
without a language that holds commands — is a problem the docs test reports.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

COMMAND_LANGUAGES = frozenset({"bash", "sh", "shell", "console"})
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*?)\s*$")
MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<body>.*?)\s*-->\s*$")
SKIP = re.compile(r"^skip \((?P<reason>.*\S.*)\)$")
OUTPUT = "output of the block above"
OUTPUT_AGAIN = "output of the block above, run again"
PROMPT = "$ "
COMMAND_START = re.compile(r"^(\$ |sigshare(-hub)? )")
"""How the first line of a block that holds commands starts."""


class Treatment(Enum):
    RUN = "run"
    SKIP = "skip"
    OUTPUT = "output"
    OUTPUT_AGAIN = "output, run again"
    NONE = "none"
    """A block that is neither commands nor checked output (JSON, CSV, a diagram, …)."""


@dataclass(frozen=True)
class Step:
    """One command of a ``console`` block and the output lines shown after it."""

    command: str
    expected: tuple[str, ...]


@dataclass(frozen=True)
class Block:
    guide: str
    line: int
    """The line of the opening fence (1-based)."""
    language: str
    """The fence's language, lower case; ``""`` for none."""
    text: str
    """The content, without the indentation of the fence (blocks in list items)."""
    marker: str | None
    """The body of the ``docs-test`` marker on the line before the fence."""

    @property
    def is_command(self) -> bool:
        return self.language in COMMAND_LANGUAGES

    @property
    def treatment(self) -> Treatment:
        if self.marker is not None and SKIP.match(self.marker):
            return Treatment.SKIP
        if self.marker == OUTPUT:
            return Treatment.OUTPUT
        if self.marker == OUTPUT_AGAIN:
            return Treatment.OUTPUT_AGAIN
        return Treatment.RUN if self.is_command else Treatment.NONE

    @property
    def skip_reason(self) -> str:
        found = SKIP.match(self.marker or "")
        assert found is not None, f"{self.where}: not marked skip"
        return found["reason"]

    @property
    def where(self) -> str:
        return f"{self.guide}:{self.line}"

    def steps(self) -> tuple[Step, ...]:
        """A ``console`` block's commands, each with the output shown after it."""
        steps: list[Step] = []
        command: list[str] = []
        expected: list[str] = []
        continued = False
        for line in self.text.splitlines():
            if continued or line.startswith(PROMPT):
                if not continued and command:
                    steps.append(Step("\n".join(command), tuple(expected)))
                    command, expected = [], []
                command.append(line if continued else line.removeprefix(PROMPT))
                continued = line.endswith("\\")
            elif command:
                expected.append(line)
        if command:
            steps.append(Step("\n".join(command), tuple(expected)))
        return tuple(steps)


@dataclass(frozen=True)
class ParsedGuide:
    blocks: tuple[Block, ...]
    problems: tuple[str, ...]
    """Markers and blocks the docs test cannot act on, each with its place."""


def parse_guide(path: Path) -> ParsedGuide:
    """Every fenced block of the Markdown file ``path`` with its marker, and what is wrong with
    the markers."""
    name = path.name
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    problems: list[str] = []
    marker: tuple[int, str] | None = None
    index = 0
    while index < len(lines):
        line = lines[index]
        opening = FENCE.match(line)
        if opening is None:
            found = MARKER.match(line)
            if marker is not None:
                problems.append(f"{name}:{marker[0]}: a docs-test marker not followed by a fence")
            marker = (index + 1, found["body"]) if found else None
            index += 1
            continue
        start = index + 1
        indent = len(opening["indent"])
        fence = opening["fence"]
        closing = re.compile(rf"^ *{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        body: list[str] = []
        index += 1
        while index < len(lines) and not closing.match(lines[index]):
            text = lines[index]
            body.append(text[min(indent, len(text) - len(text.lstrip(" "))) :])
            index += 1
        if index == len(lines):
            problems.append(f"{name}:{start}: the fence is never closed")
        blocks.append(
            Block(
                guide=name,
                line=start,
                language=(opening["info"].split() or [""])[0].lower(),
                text="\n".join(body) + "\n",
                marker=marker[1] if marker else None,
            )
        )
        marker = None
        index += 1
    if marker is not None:
        problems.append(f"{name}:{marker[0]}: a docs-test marker not followed by a fence")
    problems.extend(_block_problems(blocks))
    return ParsedGuide(tuple(blocks), tuple(problems))


def _block_problems(blocks: list[Block]) -> list[str]:
    problems: list[str] = []
    above: Block | None = None
    """The last command block so far: the one an output block's marker refers to."""
    for block in blocks:
        marker = block.marker
        if marker is not None and not (SKIP.match(marker) or marker in (OUTPUT, OUTPUT_AGAIN)):
            problems.append(
                f"{block.where}: unknown docs-test marker {marker!r} (expected 'skip (REASON)', "
                f"{OUTPUT!r} or {OUTPUT_AGAIN!r})"
            )
        elif block.is_command and marker in (OUTPUT, OUTPUT_AGAIN):
            problems.append(f"{block.where}: a {block.language} block is run, not output")
        elif not block.is_command and marker is not None and SKIP.match(marker):
            problems.append(f"{block.where}: only command blocks are run, so only they are skipped")
        elif block.treatment in (Treatment.OUTPUT, Treatment.OUTPUT_AGAIN):
            if above is None:
                problems.append(f"{block.where}: output of no block: no command block before it")
            elif above.treatment is Treatment.SKIP:
                problems.append(f"{block.where}: output of {above.where}, which is skipped")
        first = next((line for line in block.text.splitlines() if line.strip()), "")
        if not block.language and COMMAND_START.match(first):
            problems.append(
                f"{block.where}: a block without a language holds commands ({first!r}): "
                "label it bash (or console, with its output), so that it is run or marked"
            )
        if block.language == "console" and block.treatment is Treatment.RUN and not block.steps():
            problems.append(f"{block.where}: a console block without a '$ ' command")
        if block.is_command:
            above = block
    return problems


def missing_output(expected: str, output: str) -> str | None:
    """The first line of ``expected`` (blank lines aside) that ``output`` lacks, when its lines
    must appear in ``output`` in the same order, ``…`` matching any text within a line; ``None``
    when all do."""
    lines = [line.rstrip() for line in output.splitlines()]
    position = 0
    for wanted in (line.rstrip() for line in expected.splitlines()):
        if not wanted.strip():
            continue
        pattern = re.compile(".*?".join(re.escape(part) for part in wanted.split("…")))
        while position < len(lines) and not pattern.fullmatch(lines[position]):
            position += 1
        if position == len(lines):
            return wanted
        position += 1
    return None
