"""The docs test's own machinery on small made-up guides: what the markers mean, what counts as
a problem, how output is matched, and that a guide runs as one terminal session whose first
failing block fails the test with its place and output."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs.blocks import Step, Treatment, missing_output, parse_guide
from tests.docs.runner import Plan, Substitution, run_guide

FENCE = "```"


def _guide(directory: Path, text: str) -> Path:
    path = directory / "guide.md"
    path.write_text(text.replace("'''", FENCE), encoding="utf-8")
    return path


def test_unmarked_command_blocks_run_and_marked_ones_do_not(tmp_path: Path) -> None:
    path = _guide(
        tmp_path,
        """# A guide

<!-- docs-test: skip (needs systemd) -->
'''bash
systemctl start sigshare-sync.service
'''

'''sh
echo run
'''

<!-- docs-test: output of the block above -->
'''
run
'''

1. A step:

   <!-- docs-test: skip (needs a cluster) -->
   '''shell
   kubectl get pods
   '''

'''json
{"not": "a command"}
'''
""",
    )
    parsed = parse_guide(path)
    assert parsed.problems == ()
    assert [(b.line, b.language, b.treatment) for b in parsed.blocks] == [
        (4, "bash", Treatment.SKIP),
        (8, "sh", Treatment.RUN),
        (13, "", Treatment.OUTPUT),
        (20, "shell", Treatment.SKIP),
        (24, "json", Treatment.NONE),
    ]
    assert parsed.blocks[0].skip_reason == "needs systemd"
    assert parsed.blocks[3].text == "kubectl get pods\n"


def test_markers_the_test_cannot_act_on_are_problems(tmp_path: Path) -> None:
    path = _guide(
        tmp_path,
        """<!-- docs-test: output of the block above -->
'''
nothing ran before this
'''

<!-- docs-test: skip () -->
'''bash
echo no reason given
'''

<!-- docs-test: skip (a marker on its own) -->

'''bash
echo the marker above is not right before this fence
'''

<!-- docs-test: skip (only commands are run) -->
'''json
{}
'''

<!-- docs-test: skip (needs systemd) -->
'''bash
systemctl start sigshare-sync.service
'''

<!-- docs-test: output of the block above -->
'''
the output of a skipped block
'''

'''
sigshare sync accounts.csv
'''
""",
    )
    assert parse_guide(path).problems == (
        "guide.md:11: a docs-test marker not followed by a fence",
        "guide.md:2: output of no block: no command block before it",
        "guide.md:7: unknown docs-test marker 'skip ()' (expected 'skip (REASON)', "
        "'output of the block above' or 'output of the block above, run again')",
        "guide.md:18: only command blocks are run, so only they are skipped",
        "guide.md:28: output of guide.md:23, which is skipped",
        "guide.md:32: a block without a language holds commands ('sigshare sync accounts.csv'): "
        "label it bash (or console, with its output), so that it is run or marked",
    )


def test_a_console_block_is_commands_each_with_its_output(tmp_path: Path) -> None:
    path = _guide(
        tmp_path,
        """'''console
$ sigshare kinds email \\
    ' Alice@Example.COM '
alice@example.com
$ true
'''
""",
    )
    (block,) = parse_guide(path).blocks
    assert block.steps() == (
        Step("sigshare kinds email \\\n    ' Alice@Example.COM '", ("alice@example.com",)),
        Step("true", ()),
    )


def test_expected_lines_appear_in_order_with_ellipses_for_any_text() -> None:
    output = "log line\nsubmitted 4 values (0.21 s)\nanother log line\ndone\n"
    assert missing_output("submitted 4 values (…)\n\ndone", output) is None
    assert missing_output("done\nsubmitted 4 values (…)", output) == "submitted 4 values (…)"
    assert missing_output("submitted 4 values", output) == "submitted 4 values"


def test_a_guide_runs_as_one_terminal_session(tmp_path: Path) -> None:
    path = _guide(
        tmp_path,
        """'''bash
mkdir here && cd here
GREETING=hello
sleep 300 &
'''

'''bash
echo "$GREETING from $(basename "$PWD"), reading ${HOME##*/}'s stdin: [$(cat)]"
kill %1
'''

<!-- docs-test: output of the block above -->
'''
hello from here, reading home's stdin: []
'''

'''console
$ echo PLACEHOLDER
substituted
'''
""",
    )
    plan = Plan(setup="", substitutions=[Substitution.literal("PLACEHOLDER", "substituted")])
    run_guide(path, plan, tmp_path)
    assert plan.substitutions[0].uses == 1


def test_the_first_failing_block_fails_the_test_with_its_place_and_output(
    tmp_path: Path,
) -> None:
    path = _guide(
        tmp_path,
        """'''bash
echo fine
'''

'''bash
echo before
false
echo after
'''
""",
    )
    with pytest.raises(pytest.fail.Exception) as failure:
        run_guide(path, Plan(setup="", substitutions=[]), tmp_path)
    assert str(failure.value) == (
        "guide.md:5 (bash block): failed: exit 1\n"
        "--- the block as run:\necho before\nfalse\necho after\n"
        "--- output:\nbefore"
    )


def test_output_a_guide_shows_must_be_printed(tmp_path: Path) -> None:
    path = _guide(
        tmp_path,
        """'''bash
echo "pushed email 3 (0.20 s)"
'''

<!-- docs-test: output of the block above, run again -->
'''
pushed email 4 (…)
'''
""",
    )
    with pytest.raises(pytest.fail.Exception) as failure:
        run_guide(path, Plan(setup="", substitutions=[]), tmp_path)
    assert str(failure.value).startswith(
        "guide.md:1 (bash block): its output lacks the line (shown at guide.md:6)\n"
        "    pushed email 4 (…)\n"
    )


def test_a_substitution_no_block_uses_fails(tmp_path: Path) -> None:
    path = _guide(tmp_path, "'''bash\ntrue\n'''\n")
    plan = Plan(setup="", substitutions=[Substitution.literal("hub.example:7443", "elsewhere")])
    with pytest.raises(AssertionError, match=r"no block of guide\.md uses any more"):
        run_guide(path, plan, tmp_path)
