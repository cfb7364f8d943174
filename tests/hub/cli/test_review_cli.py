"""``sigshare-hub review`` and ``sigshare-hub export``: exit codes, exact output, JSON documents and
files, against a forum seeded through the hub's services (``tests.support.review_seed``) on both
databases."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from stix2validator import ValidationOptions, validate_string  # type: ignore[import-untyped]

from sigshare.client.exit_codes import ExitCode
from sigshare.hub.cli import cli
from sigshare.hub.domain import RecordType, Submission
from sigshare.hub.listing import Cursor, RecordQuery
from sigshare.hub.services import reviews
from sigshare.hub.services.exports import (
    TLP_MARKING_IDS,
    campaign_record,
    export_document,
    indicator_record,
)
from sigshare.hub.storage import make_engine, session_scope
from sigshare.hub.storage.database import DATABASE_URL_ENV
from sigshare.sketch.prf import tokens_to_bytes
from tests.support.cli import invoke_hub, invoke_hub_json, table_cells
from tests.support.hub import EMAIL, PROMPT, email_prf, forum_secret
from tests.support.review_seed import (
    EMAILS,
    PROBE_FLAGS,
    PROBES,
    SeededForum,
    expected_campaign_seen,
    expected_categories,
    probe_values,
    seed_forum,
    seed_probing,
)

OPERATOR = "cli:alice"


@pytest.fixture(autouse=True)
def _operator(monkeypatch: pytest.MonkeyPatch) -> None:
    """Commands run as local user ``alice``, whatever the test machine's user is."""
    monkeypatch.setattr("getpass.getuser", lambda: "alice")
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)


@dataclass(frozen=True)
class Seeded:
    url: str
    forum: SeededForum
    indicators: list[Any]
    campaigns: list[Any]
    """The review records in creation order, as the service lists them."""

    def indicator_of(self, value: str) -> str:
        (found,) = [i for i, v in self.forum.value_of_id.items() if v == value]
        return found


@pytest.fixture
def seeded(database_url: str) -> Iterator[Seeded]:
    engine = make_engine(database_url)
    try:
        forum = seed_forum(engine)
        with session_scope(engine) as session:
            indicators = reviews.indicators(
                session, RecordQuery(RecordType.INDICATOR, descending=False)
            ).items
            campaigns = reviews.campaigns(
                session, RecordQuery(RecordType.CAMPAIGN, descending=False)
            ).items
        yield Seeded(database_url, forum, indicators, campaigns)
    finally:
        engine.dispose()


def refused(url: str, *args: str, code: ExitCode) -> str:
    """The one-line message of a command that must fail with ``code``."""
    result = invoke_hub(url, *args)
    assert result.exit_code == code, result.output
    assert result.stdout == ""
    return result.stderr.strip().removeprefix("error: ")


def audit_actions(url: str, actor: str = OPERATOR) -> list[tuple[str, str, dict[str, Any]]]:
    """``(action, target, details)`` of ``actor``'s audit entries, oldest first."""
    document = invoke_hub_json(url, "audit", "show", "--actor", actor, "--page-size", "1000")
    return [(e["action"], e["target"], e["details"]) for e in reversed(document["entries"])]


# ---------------------------------------------------------------------------------- listings


def test_review_indicators_pages_filters_and_sorts(seeded: Seeded) -> None:
    url = seeded.url
    everything = [indicator_record(i) for i in seeded.indicators]
    newest_first = invoke_hub_json(url, "review", "indicators")
    assert newest_first == {
        "total": 3,
        "first": 1,
        "page_size": 50,
        "next_cursor": None,
        "previous_cursor": None,
        "indicators": everything[::-1],
    }
    oldest_first = ("review", "indicators", "--asc", "--page-size", "2")
    first = invoke_hub_json(url, *oldest_first)
    assert (first["first"], first["previous_cursor"], first["indicators"]) == (
        1,
        None,
        everything[:2],
    )
    second = invoke_hub_json(url, *oldest_first, "--cursor", first["next_cursor"])
    assert (second["total"], second["first"], second["next_cursor"], second["indicators"]) == (
        3,
        3,
        None,
        everything[2:],
    )
    back = invoke_hub_json(url, *oldest_first, "--cursor", second["previous_cursor"])
    assert back["indicators"] == everything[:2]
    paged = invoke_hub(url, *oldest_first)
    assert paged.stdout.startswith("shared indicators 1-2 of 3\n")
    assert paged.stdout.endswith(f"next page: --cursor {first['next_cursor']}\n")
    # A cursor names a place in one order: it is refused for another.
    assert refused(
        url, "review", "indicators", "--cursor", first["next_cursor"], code=ExitCode.INPUT
    ) == ("page token is not one this hub issued")
    assert refused(url, "review", "indicators", "--cursor", "p1.5", code=ExitCode.INPUT) == (
        "page token is not one this hub issued"
    )
    by_reporters = invoke_hub_json(url, "review", "indicators", "--sort", "reporters")["indicators"]
    assert [r["reporters"] for r in by_reporters] == [3, 2, 2]
    farm = invoke_hub_json(url, "review", "indicators", "--category", "account-farm")
    assert sorted(seeded.forum.value_of_id[r["id"]] for r in farm["indicators"]) == [
        "alice.rawvalue@example.com",
        "bob.rawvalue@example.org",
    ]
    assert invoke_hub_json(url, "review", "indicators", "--status", "confirmed")["indicators"] == []
    assert invoke_hub_json(url, "review", "indicators", "--kind", EMAIL)["total"] == 3

    table = invoke_hub(url, "review", "indicators", "--asc")
    assert table.exit_code == 0, table.output
    assert table.stdout.startswith("shared indicators 1-3 of 3\n")
    assert "--cursor" not in table.stdout
    rows = table_cells(table.stdout)
    assert [row[0] for row in rows] == [i.id for i in seeded.indicators]
    bob = seeded.indicator_of("bob.rawvalue@example.org")
    assert [row[1:4] for row in rows if row[0] == bob] == [["email", "3", "-"]]
    assert [row[7:] for row in rows if row[0] == bob] == [["new", "-"]]
    # Categories are shown literally, markup-like text included.
    assert '=HYPERLINK("http://evil.example/x","click")' in table.stdout

    after_the_oldest = Cursor("indicators", "created", True, 1, 1).encode()
    past = invoke_hub(url, "review", "indicators", "--cursor", after_the_oldest)
    assert past.stdout == "no shared indicators past this cursor (3 in all)\n"
    none = invoke_hub(url, "review", "indicators", "--status", "dismissed")
    assert none.stdout == "no shared indicators match\n"
    assert refused(url, "review", "indicators", "--kind", "Bad Kind", code=ExitCode.INPUT) == (
        "kind 'Bad Kind' is not a valid name: 1-64 characters of a-z, 0-9, '.', '_' or '-', "
        "starting with a letter or digit"
    )
    for bad in (["--page", "2"], ["--page-size", "0"], ["--page-size", "1001"], ["--sort", "x"]):
        assert invoke_hub(url, "review", "indicators", *bad).exit_code == ExitCode.USAGE


def test_review_indicators_show_names_only_where_the_policy_reveals_them(
    seeded: Seeded,
) -> None:
    hidden = invoke_hub_json(seeded.url, "review", "indicators")["indicators"]
    assert all(r["reporter_names"] == [] for r in hidden)
    set_reveal = invoke_hub(
        seeded.url,
        *("params", "set", EMAIL, "--key-id", "epoch-1", "--capacity", "20000", "--fpr", "0.001"),
        "--reveal-members",
    )
    assert set_reveal.exit_code == 0, set_reveal.output
    shown = invoke_hub_json(seeded.url, "review", "indicators")["indicators"]
    assert {r["id"]: r["reporter_names"] for r in shown} == {
        i: sorted(EMAILS[v]) for i, v in seeded.forum.value_of_id.items()
    }


def test_review_campaigns(seeded: Seeded) -> None:
    url = seeded.url
    document = invoke_hub_json(url, "review", "campaigns", "--asc")
    assert document == {
        "total": 2,
        "first": 1,
        "page_size": 50,
        "next_cursor": None,
        "previous_cursor": None,
        "campaigns": [campaign_record(c) for c in seeded.campaigns],
    }
    assert sorted(c["members"] for c in document["campaigns"]) == [["m1", "m2"], ["m1", "m3"]]
    assert {tuple(c["categories"]) for c in document["campaigns"]} == {
        ("-extraction", "t0"),
        ("t1",),
    }
    assert invoke_hub_json(url, "review", "campaigns", "--family", PROMPT)["total"] == 2
    assert invoke_hub_json(url, "review", "campaigns", "--family", "other")["total"] == 0
    assert invoke_hub_json(url, "review", "campaigns", "--category", "t1")["total"] == 1
    table = invoke_hub(url, "review", "campaigns", "--asc", "--sort", "volume")
    assert table.exit_code == 0, table.output
    assert sorted(table_cells(table.stdout)) == sorted(
        [
            c.id,
            PROMPT,
            ", ".join(c.members),
            "1.00",
            "18",
            ", ".join(c.categories),
            *(f"{seen:%Y-%m-%d %H:%M:%S}Z" for seen in expected_campaign_seen(c.members)),
            "new",
            "-",
        ]
        for c in seeded.campaigns
    )
    for record in document["campaigns"]:
        first, last = expected_campaign_seen(record["members"])
        assert (record["first_seen"], record["last_seen"]) == (first.isoformat(), last.isoformat())


def test_review_overlaps(seeded: Seeded) -> None:
    document = invoke_hub_json(seeded.url, "review", "overlaps")
    (matrix,) = document["kinds"]
    assert (matrix["kind"], matrix["members"]) == (EMAIL, ["m1", "m2", "m3", "m4"])
    sizes = {m: len(s) for m, s in seeded.forum.emails.sets.items()}
    shared = {
        (a, b): sum(1 for holders in EMAILS.values() if a in holders and b in holders)
        for a in sizes
        for b in sizes
    }
    for row, a in enumerate(matrix["members"]):
        for column, b in enumerate(matrix["members"]):
            truth = sizes[a] if a == b else shared[(a, b)]
            assert abs(matrix["estimate"][row][column] - truth) < 3, (a, b)
            assert matrix["stderr"][row][column] >= 0
    assert invoke_hub_json(seeded.url, "review", "overlaps", "--kind", EMAIL) == document
    table = invoke_hub(seeded.url, "review", "overlaps")
    assert table.stdout.startswith("email: estimated shared items (members × members)\n")
    assert [row[0] for row in table_cells(table.stdout)] == ["m1", "m2", "m3", "m4"]
    assert refused(seeded.url, "review", "overlaps", "--kind", "phone", code=ExitCode.INPUT) == (
        "indicator kind 'phone' not found"
    )


@dataclass(frozen=True)
class Probed:
    url: str
    current: dict[str, Submission]
    """Each member's current e-mail submission."""

    def document(self, member: str, flags: tuple[str, ...] | None = None) -> dict[str, Any]:
        """What `review submissions --json` must say about ``member``'s current submission."""
        submission = self.current[member]
        declared, asked = PROBES[member][-1]
        return {
            "member": member,
            "kind": EMAIL,
            "submission": submission.id,
            "created_at": submission.created_at.isoformat(),
            "declared_count": declared,
            "tokens_asked": asked,
            "flags": list(PROBE_FLAGS[member] if flags is None else flags),
        }


@pytest.fixture
def probed(database_url: str) -> Probed:
    engine = make_engine(database_url)
    try:
        return Probed(database_url, seed_probing(engine))
    finally:
        engine.dispose()


def test_review_submissions_lists_counts_and_probing_flags(probed: Probed) -> None:
    url = probed.url
    assert invoke_hub_json(url, "review", "submissions") == {
        "submissions": [probed.document(member) for member in PROBES]
    }
    assert invoke_hub_json(url, "review", "submissions", "--flagged") == {
        "submissions": [probed.document("m1"), probed.document("m2")]
    }
    assert invoke_hub_json(url, "review", "submissions", "--kind", EMAIL) == invoke_hub_json(
        url, "review", "submissions"
    )
    assert invoke_hub_json(url, "review", "submissions", "--kind", PROMPT) == {"submissions": []}

    table = invoke_hub(url, "review", "submissions")
    assert (table.exit_code, table.stderr) == (0, "")
    assert table.stdout.startswith("current submissions\n")
    created = {m: s.created_at.strftime("%Y-%m-%d %H:%M:%SZ") for m, s in probed.current.items()}
    assert table_cells(table.stdout) == [
        ["m1", EMAIL, created["m1"], "250", "0", "declared_count_jump"],
        ["m2", EMAIL, created["m2"], "61", "61", "query_volume_jump"],
        ["m3", EMAIL, created["m3"], "55", "30", "-"],
        ["m4", EMAIL, created["m4"], "45", "45", "-"],
    ]
    flagged = invoke_hub(url, "review", "submissions", "--flagged")
    assert [row[0] for row in table_cells(flagged.stdout)] == ["m1", "m2"]


def test_review_submissions_flag_factor(probed: Probed) -> None:
    url = probed.url
    # m3 asked about 30 tokens after 20 (×1.5) and declares 55 after 50 (×1.1); m2 declares 61
    # after 60 and asked 61 after 10; m1 declares 250 after 40 and asked nothing either time.
    cases: list[tuple[str, dict[str, tuple[str, ...]]]] = [
        ("1.5", {"m1": ("declared_count_jump",), "m2": ("query_volume_jump",)}),
        ("1.4", {"m1": ("declared_count_jump",), "m2": ("query_volume_jump",),
                 "m3": ("query_volume_jump",)}),
        ("1.05", {"m1": ("declared_count_jump",), "m2": ("query_volume_jump",),
                  "m3": ("declared_count_jump", "query_volume_jump")}),
        ("6.1", {"m1": ("declared_count_jump",)}),
        ("6.25", {}),
    ]  # fmt: skip
    for factor, expected in cases:
        document = invoke_hub_json(
            url, "review", "submissions", "--flag-factor", factor, "--flagged"
        )
        assert document == {
            "submissions": [probed.document(member, flags) for member, flags in expected.items()]
        }, factor
    for factor in ("1", "0.5", "-3"):
        message = refused(
            url, "review", "submissions", "--flag-factor", factor, code=ExitCode.INPUT
        )
        assert message == f"the flag factor must be above 1, got {float(factor)}"
    assert (
        invoke_hub(url, "review", "submissions", "--flag-factor", "five").exit_code
        == ExitCode.USAGE
    )
    assert refused(url, "review", "submissions", "--kind", "Bad Kind", code=ExitCode.INPUT) == (
        "kind 'Bad Kind' is not a valid name: 1-64 characters of a-z, 0-9, '.', '_' or '-', "
        "starting with a letter or digit"
    )


def test_review_submissions_is_audited_and_shows_no_values_or_tokens(probed: Probed) -> None:
    url = probed.url
    outputs = [
        invoke_hub(url, "review", "submissions", *options).stdout
        for options in ([], ["--json"], ["--flagged"], ["--kind", EMAIL, "--json"])
    ]
    assert audit_actions(url) == [
        ("review.submissions", "*", {}),
        ("review.submissions", "*", {}),
        ("review.submissions", "*", {}),
        ("review.submissions", EMAIL, {}),
    ]
    prf = email_prf(forum_secret())
    for member, steps in PROBES.items():
        values = probe_values(member, steps[-1][0])
        tokens = tokens_to_bytes(prf.tokens(values))
        for output in outputs:
            assert "rawvalue" not in output
            assert not [t for t in tokens if t.hex() in output]


def test_review_submissions_without_submissions(database_url: str) -> None:
    assert invoke_hub(database_url, "review", "submissions").stdout == "no active submissions\n"
    assert invoke_hub(database_url, "review", "submissions", "--flagged").stdout == (
        "no flagged submissions\n"
    )
    assert invoke_hub_json(database_url, "review", "submissions") == {"submissions": []}


# ---------------------------------------------------------------------------------- workflow


def test_set_status_follows_the_workflow(seeded: Seeded) -> None:
    url = seeded.url
    record = seeded.indicator_of("alice.rawvalue@example.com")
    assert refused(url, "review", "set-status", record, "confirmed", code=ExitCode.INPUT) == (
        f"indicator {record} is new; it can move to dismissed, triaged, not confirmed"
    )
    moved = invoke_hub(url, "review", "set-status", record, "triaged")
    assert (moved.exit_code, moved.stdout) == (0, f"indicator {record}: new → triaged\n")
    event = invoke_hub_json(
        url, "review", "set-status", record, "confirmed", "--note", "seen by three firms"
    )
    at = event.pop("at")
    assert datetime.fromisoformat(at).tzinfo is not None
    assert event == {
        "id": event["id"],
        "record_type": "indicator",
        "record_id": record,
        "actor": OPERATOR,
        "kind": "status",
        "from_status": "triaged",
        "to_status": "confirmed",
        "assignee": None,
        "note": "seen by three firms",
        "member_note": None,
    }
    error = invoke_hub_json(url, "review", "set-status", record, "dismissed", code=ExitCode.INPUT)
    assert error == {
        "error": f"indicator {record} is confirmed; it can move to triaged, not dismissed",
        "exit_code": 5,
        "status": "input",
    }
    reopened = invoke_hub(url, "review", "set-status", record, "triaged", "--note", "reopened")
    assert reopened.stdout == (
        f"indicator {record}: confirmed → triaged (note kept in its history)\n"
    )
    campaign = seeded.campaigns[0].id
    dismissed = invoke_hub(url, "review", "set-status", campaign, "dismissed")
    assert dismissed.stdout == f"campaign {campaign}: new → dismissed\n"
    assert refused(url, "review", "set-status", "0" * 32, "triaged", code=ExitCode.INPUT) == (
        f"indicator or campaign '{'0' * 32}' not found"
    )
    assert invoke_hub(url, "review", "set-status", record, "done").exit_code == ExitCode.USAGE
    assert [(a, t, d) for a, t, d in audit_actions(url) if a == "review.status"] == [
        ("review.status", f"indicator:{record}", {"from": "new", "to": "triaged", "note": False}),
        (
            "review.status",
            f"indicator:{record}",
            {"from": "triaged", "to": "confirmed", "note": True},
        ),
        (
            "review.status",
            f"indicator:{record}",
            {"from": "confirmed", "to": "triaged", "note": True},
        ),
        (
            "review.status",
            f"campaign:{campaign}",
            {"from": "new", "to": "dismissed", "note": False},
        ),
    ]
    listed = invoke_hub_json(url, "review", "indicators", "--status", "triaged")["indicators"]
    assert [r["id"] for r in listed] == [record]


def test_assign_note_and_history(seeded: Seeded) -> None:
    url = seeded.url
    record = seeded.campaigns[1].id
    assigned = invoke_hub(url, "review", "assign", record, "coord")
    assert (assigned.exit_code, assigned.stdout) == (0, f"campaign {record}: assigned to coord\n")
    noted = invoke_hub(url, "review", "note", record, "members m1 and m2 asked for a call")
    assert noted.stdout == f"campaign {record}: note added\n"
    moved = invoke_hub(url, "review", "set-status", record, "triaged")
    assert moved.exit_code == 0, moved.output
    unassigned = invoke_hub_json(
        url, "review", "assign", record, "--nobody", "--note", "handed back"
    )
    assert (unassigned["assignee"], unassigned["note"]) == (None, "handed back")
    assert refused(url, "review", "note", record, "   ", code=ExitCode.INPUT) == (
        "a note needs some text"
    )
    assert refused(url, "review", "assign", record, "Bad Name", code=ExitCode.INPUT).startswith(
        "assignee 'Bad Name' is not a valid name"
    )
    choices = "records are assigned to one of admin, coord"
    assert refused(url, "review", "assign", record, "bob", code=ExitCode.INPUT) == (
        f"no coordinator or admin named 'bob': {choices}"
    )
    assert refused(url, "review", "assign", record, "m1", code=ExitCode.INPUT) == (
        f"no coordinator or admin named 'm1' (m1 is a member): {choices}"
    )
    for args in ([record], [record, "coord", "--nobody"]):
        result = invoke_hub(url, "review", "assign", *args)
        assert result.exit_code == ExitCode.USAGE
        assert "give either NAME or --nobody" in result.stderr

    history = invoke_hub_json(url, "review", "history", record)
    events = history.pop("events")
    assert history == {
        "record_type": "campaign",
        "record_id": record,
        "status": "triaged",
        "assignee": None,
        "member_note": None,
    }
    assert [
        (e["actor"], e["kind"], e["from_status"], e["to_status"], e["assignee"], e["note"])
        for e in events
    ] == [
        (OPERATOR, "assign", None, None, "coord", None),
        (OPERATOR, "note", None, None, "coord", "members m1 and m2 asked for a call"),
        (OPERATOR, "status", "new", "triaged", "coord", None),
        (OPERATOR, "assign", None, None, None, "handed back"),
    ]
    table = invoke_hub(url, "review", "history", record)
    assert table.stdout.startswith(f"campaign {record}: triaged, assigned to nobody\n")
    assert [row[1:] for row in table_cells(table.stdout)] == [
        [OPERATOR, "assigned to coord", "coord", "-"],
        [OPERATOR, "note", "coord", "members m1 and m2 asked for a call"],
        [OPERATOR, "new → triaged", "coord", "-"],
        [OPERATOR, "unassigned", "-", "handed back"],
    ]
    fresh = seeded.campaigns[0].id
    empty = invoke_hub(url, "review", "history", fresh)
    assert empty.stdout == f"campaign {fresh}: new, assigned to nobody\nno review events yet\n"
    assert refused(url, "review", "history", "nope", code=ExitCode.INPUT) == (
        "indicator or campaign 'nope' not found"
    )
    assert [(a, t) for a, t, _ in audit_actions(url) if a != "review.status"] == [
        ("review.assign", f"campaign:{record}"),
        ("review.note", f"campaign:{record}"),
        ("review.assign", f"campaign:{record}"),
        ("review.history", f"campaign:{record}"),
        ("review.history", f"campaign:{record}"),
        ("review.history", f"campaign:{fresh}"),
    ]


def test_reads_are_audited_as_the_cli_operator(seeded: Seeded) -> None:
    url = seeded.url
    for args in (
        ["review", "overlaps"],
        ["review", "overlaps", "--kind", EMAIL],
        ["review", "indicators", "--kind", EMAIL],
        ["review", "campaigns"],
        ["review", "history", seeded.campaigns[0].id],
    ):
        result = invoke_hub(url, *args)
        assert result.exit_code == 0, result.output
    assert invoke_hub(url, "review", "indicators", "--kind", "Bad Kind").exit_code == ExitCode.INPUT
    assert audit_actions(url) == [
        ("review.overlap", "*", {}),
        ("review.overlap", EMAIL, {}),
        ("review.indicators", EMAIL, {}),
        ("review.campaigns", "*", {}),
        ("review.history", f"campaign:{seeded.campaigns[0].id}", {}),
    ]


# ---------------------------------------------------------------------------------- export


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def leftovers(directory: Path) -> list[str]:
    return sorted(name for name in os.listdir(directory) if name.endswith(".tmp"))


def test_export_writes_private_files_and_refuses_to_overwrite(
    seeded: Seeded, tmp_path: Path
) -> None:
    url = seeded.url
    out = tmp_path / "forum.csv"
    written = invoke_hub(url, "export", "csv", "--out", str(out))
    assert written.exit_code == 0, written.output
    content = out.read_bytes()
    assert written.stdout == (
        f"exported 3 shared indicators and 2 campaigns as csv to {out} ({len(content):,} bytes)\n"
    )
    assert mode(out) == 0o600
    engine = make_engine(url)
    try:
        with session_scope(engine) as session:
            direct = export_document(session, "csv", datetime.now(UTC), actor="test")
    finally:
        engine.dispose()
    assert content == direct.content

    out.write_text("an older export\n")
    out.chmod(0o644)
    message = refused(url, "export", "csv", "--out", str(out), code=ExitCode.INPUT)
    assert message == f"{out} exists: pass --force to replace it"
    assert out.read_text() == "an older export\n"
    replaced = invoke_hub(url, "export", "csv", "--out", str(out), "--force")
    assert replaced.exit_code == 0, replaced.output
    assert (out.read_bytes(), mode(out)) == (content, 0o600)
    assert leftovers(tmp_path) == []

    missing = tmp_path / "no" / "such" / "dir" / "x.csv"
    assert refused(url, "export", "csv", "--out", str(missing), code=ExitCode.INPUT) == (
        f"cannot write {missing}: No such file or directory"
    )
    assert refused(url, "export", "csv", "--out", str(tmp_path), code=ExitCode.INPUT) == (
        f"{tmp_path} is a directory: name the export file"
    )
    # Refused exports are not recorded; written ones are, with what they held.
    assert [(a, t, d) for a, t, d in audit_actions(url) if a == "export"] == [
        ("export", "csv", {"indicators": 3, "campaigns": 2}),
        ("export", "csv", {"indicators": 3, "campaigns": 2}),
    ]


def test_export_stix_json_document_and_valid_bundle(seeded: Seeded, tmp_path: Path) -> None:
    out = tmp_path / "forum.stix.json"
    document = invoke_hub_json(
        seeded.url, "export", "stix", "--out", str(out), "--tlp", "amber+strict"
    )
    content = out.read_bytes()
    assert document == {
        "format": "stix",
        "path": str(out),
        "bytes": len(content),
        "sha256": hashlib.sha256(content).hexdigest(),
        "media_type": "application/stix+json;version=2.1",
        "indicators": 3,
        "campaigns": 2,
        "tlp": "amber+strict",
    }
    assert mode(out) == 0o600
    results = validate_string(content.decode(), ValidationOptions(version="2.1", strict=True))
    assert (results.is_valid, results.errors, results.warnings) == (True, [], [])
    bundle = json.loads(content)
    markings = {tuple(o.get("object_marking_refs", ())) for o in bundle["objects"]}
    assert markings == {(TLP_MARKING_IDS["amber+strict"],), ()}  # () is the definition itself
    default = invoke_hub_json(seeded.url, "export", "stix", "--out", str(out), "--force")
    assert default["tlp"] == "amber"
    json_document = invoke_hub_json(seeded.url, "export", "json", "--out", str(tmp_path / "f.json"))
    assert json_document["tlp"] is None


def test_export_to_stdout(seeded: Seeded) -> None:
    result = invoke_hub(seeded.url, "export", "json", "--out", "-")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert [r["id"] for r in document["indicators"]] == [i.id for i in seeded.indicators]
    assert document["indicators"][0]["categories"] == expected_categories(
        EMAILS[seeded.forum.value_of_id[seeded.indicators[0].id]]
    )
    assert result.stderr.startswith("exported 3 shared indicators and 2 campaigns as json to ")
    csv_out = invoke_hub(seeded.url, "export", "csv", "--out", "-")
    assert csv_out.stdout_bytes.startswith(b"record_type,id,kind,family,")
    assert csv_out.stdout_bytes.count(b"\r\n") == 1 + 3 + 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["json", "--out", "-", "--json"], "--json needs --out FILE"),
        (["csv", "--out", "x.csv", "--tlp", "red"], "--tlp marks STIX bundles only"),
        (["xml", "--out", "x.xml"], "'xml' is not one of"),
        (["stix", "--out", "x.json", "--tlp", "white"], "'white' is not one of"),
        (["csv"], "Missing option '--out'"),
    ],
)
def test_export_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["--db", f"sqlite:///{tmp_path / 'none.db'}", "export", *args])
    assert result.exit_code == ExitCode.USAGE
    assert message in result.stderr


def test_nothing_shown_or_exported_leaks_raw_data(seeded: Seeded, tmp_path: Path) -> None:
    url = seeded.url
    outputs = []
    for args in (
        ["review", "overlaps"],
        ["review", "indicators"],
        ["review", "campaigns"],
        ["review", "history", seeded.indicators[0].id],
    ):
        outputs += [invoke_hub(url, *args).stdout, invoke_hub(url, *args, "--json").stdout]
    for fmt in ("csv", "json", "stix"):
        outputs.append(invoke_hub(url, "export", fmt, "--out", "-").stdout)
    forbidden = seeded.forum.forbidden_strings()
    for output in outputs:
        assert output
        folded = output.casefold()
        assert not [s for s in forbidden if s.casefold() in folded]
        assert "rawvalue" not in folded
