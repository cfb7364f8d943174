"""``sigshare-hub review --hub``: coordinators review over gRPC with their own credential.

A seeded forum (:mod:`tests.support.review_seed`) is served by a real hub on loopback over SQLite
and PostgreSQL; every review command runs in this process both ways — on the database (``--db``,
recorded as ``cli:alice``) and over gRPC as the coordinator ``coord`` — and must print the same
text and JSON and exit alike. Changes over gRPC are recorded under the coordinator's name in the
record's history and the audit log. The remote settings are checked before anything is asked,
with the member CLI's messages; TLS and mTLS work as for members.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from sigshare.client.exit_codes import ExitCode
from sigshare.hub.cli import cli
from sigshare.hub.storage import make_engine
from sigshare.hub.storage.database import DATABASE_URL_ENV
from tests.support.cli import table_cells
from tests.support.hub import COORDINATOR, EMAIL, PROMPT, RunningHub
from tests.support.review_seed import SeededForum, running_seeded_hub
from tests.support.tls import issue_forum_pki, tls_hub

OPERATOR = "cli:alice"


@pytest.fixture(autouse=True)
def _operator(monkeypatch: pytest.MonkeyPatch) -> None:
    """Commands on the database run as local user ``alice``."""
    monkeypatch.setattr("getpass.getuser", lambda: "alice")
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)


def credential_file(directory: Path, name: str, credential: str, mode: int = 0o600) -> Path:
    path = directory / f"{name}.credential"
    path.write_text(credential + "\n")
    path.chmod(mode)
    return path


@dataclass
class Review:
    url: str
    hub: RunningHub
    forum: SeededForum
    files: dict[str, Path]
    """Principal → its credential file."""

    def local(self, *args: str) -> Result:
        """``sigshare-hub --db URL review ARGS``: on the database."""
        return CliRunner().invoke(cli, ["--db", self.url, "review", *args])

    def remote(self, *args: str, who: str = COORDINATOR, hub: str | None = None) -> Result:
        """``sigshare-hub review --hub … ARGS``: over gRPC as ``who``."""
        connection = ["--hub", hub or self.hub.target, "--credential-file", str(self.files[who])]
        return CliRunner().invoke(cli, ["review", *connection, "--insecure", *args])

    def indicator_of(self, value: str) -> str:
        (found,) = [i for i, v in self.forum.value_of_id.items() if v == value]
        return found

    def audit(self, actor: str) -> list[tuple[str, str, dict[str, Any]]]:
        shown = CliRunner().invoke(
            cli, ["--db", self.url, "audit", "show", "--actor", actor, "--json"]
        )
        assert shown.exit_code == 0, shown.output
        entries = json.loads(shown.stdout)["entries"]
        return [(e["action"], e["target"], e["details"]) for e in reversed(entries)]


@pytest.fixture
def review(database_url: str, tmp_path: Path) -> Iterator[Review]:
    engine = make_engine(database_url)
    try:
        with running_seeded_hub(engine) as (hub, forum):
            files = {
                name: credential_file(tmp_path, name, hub.credentials[name])
                for name in (COORDINATOR, "admin", "m1")
            }
            yield Review(database_url, hub, forum, files)
    finally:
        engine.dispose()


def same(local: Result, remote: Result) -> Result:
    """Both runs exited alike and printed the same; the remote one."""
    assert (remote.exit_code, remote.stdout, remote.stderr) == (
        local.exit_code,
        local.stdout,
        local.stderr,
    ), f"local:\n{local.output}\nremote:\n{remote.output}"
    return remote


# ---------------------------------------------------------------------------------- reads


READS: list[tuple[str, ...]] = [
    ("overlaps",),
    ("overlaps", "--kind", EMAIL),
    ("submissions",),
    ("submissions", "--flagged", "--flag-factor", "1.5"),
    ("submissions", "--kind", PROMPT),
    ("indicators",),
    ("indicators", "--asc", "--page-size", "2"),
    ("indicators", "--sort", "reporters", "--status", "new"),
    ("indicators", "--kind", EMAIL, "--category", "account-farm"),
    ("indicators", "--assignee", COORDINATOR),
    ("campaigns",),
    ("campaigns", "--sort", "volume", "--asc"),
    ("campaigns", "--family", PROMPT, "--category", "t1"),
]


def test_every_read_prints_the_same_over_grpc_as_on_the_database(review: Review) -> None:
    record = review.indicator_of("bob.rawvalue@example.org")
    review.local("set-status", record, "triaged", "--member-note", "looking into it")
    review.local("assign", record, COORDINATOR)
    for args in [*READS, ("history", record)]:
        for output in ((), ("--json",)):
            shown = same(review.local(*args, *output), review.remote(*args, *output))
            assert shown.exit_code == 0, (args, shown.output)
    # Pages turn alike: the remote listing's cursor is the one the database listing names.
    first = json.loads(review.remote("indicators", "--asc", "--page-size", "1", "--json").stdout)
    assert first["next_cursor"]
    page = ("indicators", "--asc", "--page-size", "1", "--cursor", first["next_cursor"])
    second = same(review.local(*page), review.remote(*page))
    assert "previous page: --cursor " in second.stdout
    assert [(a, t) for a, t, _ in review.audit(COORDINATOR)][:3] == [
        ("review.overlap", "*"),
        ("review.overlap", "*"),
        ("review.overlap", EMAIL),
    ]


def test_refusals_exit_as_on_the_hub_host(review: Review) -> None:
    record = review.indicator_of("alice.rawvalue@example.com")
    cases = [
        (("set-status", record, "confirmed"), ExitCode.INPUT),
        (("history", "0" * 32), ExitCode.INPUT),
        (("note", record, "   "), ExitCode.INPUT),
        (("assign", record, "m1"), ExitCode.INPUT),
        (("indicators", "--kind", "Bad Kind"), ExitCode.INPUT),
        (("overlaps", "--kind", "phone"), ExitCode.INPUT),
        (("submissions", "--flag-factor", "1"), ExitCode.INPUT),
        (("submissions", "--flag-factor", "0"), ExitCode.INPUT),
        (("indicators", "--cursor", "c1.bogus"), ExitCode.INPUT),
        (("set-status", record, "done"), ExitCode.USAGE),
    ]
    for args, code in cases:
        for output in ((), ("--json",)):
            refused = same(review.local(*args, *output), review.remote(*args, *output))
            assert refused.exit_code == code, (args, refused.output)
    message = review.remote("set-status", record, "confirmed").stderr
    assert message == (
        f"error: indicator {record} is new; it can move to dismissed, triaged, not confirmed\n"
    )


# ---------------------------------------------------------------------------------- changes


def test_changes_over_grpc_are_recorded_under_the_coordinators_name(review: Review) -> None:
    over_grpc = review.indicator_of("bob.rawvalue@example.org")
    on_db = review.indicator_of("dave.rawvalue@example.com")
    steps: list[tuple[str, ...]] = [
        ("set-status", "{id}", "triaged"),
        ("set-status", "{id}", "confirmed", "--note", "three firms", "--member-note", "block it"),
        ("assign", "{id}", COORDINATOR, "--note", "mine"),
        ("note", "{id}", "blocked at the gateways", "--for-members"),
        ("note", "{id}", "asked m3 for logs"),
        ("assign", "{id}", "--nobody"),
    ]
    for step in steps:
        remote = review.remote(*(a.format(id=over_grpc) for a in step))
        local = review.local(*(a.format(id=on_db) for a in step))
        assert remote.exit_code == local.exit_code == 0, remote.output
        assert remote.stdout == local.stdout.replace(on_db, over_grpc)
    assert review.remote("set-status", over_grpc, "triaged", "--json").exit_code == 0
    event = json.loads(review.local("set-status", on_db, "triaged", "--json").stdout)
    assert (event["actor"], event["member_note"]) == (OPERATOR, None)

    history = json.loads(review.remote("history", over_grpc, "--json").stdout)
    assert [
        (e["actor"], e["kind"], e["to_status"], e["note"], e["member_note"])
        for e in history["events"]
    ] == [
        (COORDINATOR, "status", "triaged", None, None),
        (COORDINATOR, "status", "confirmed", "three firms", "block it"),
        (COORDINATOR, "assign", None, "mine", None),
        (COORDINATOR, "note", None, None, "blocked at the gateways"),
        (COORDINATOR, "note", None, "asked m3 for logs", None),
        (COORDINATOR, "assign", None, None, None),
        (COORDINATOR, "status", "triaged", None, None),
    ]
    assert (history["status"], history["member_note"]) == ("triaged", None)
    on_db_history = json.loads(review.local("history", on_db, "--json").stdout)
    assert {e["actor"] for e in on_db_history["events"]} == {OPERATOR}

    target = f"indicator:{over_grpc}"
    assert review.audit(COORDINATOR) == [
        ("review.status", target, {"from": "new", "to": "triaged", "note": False}),
        (
            "review.status",
            target,
            {"from": "triaged", "to": "confirmed", "note": True, "member_note": True},
        ),
        ("review.assign", target, {"assignee": COORDINATOR}),
        ("review.note", target, {"for_members": True}),
        ("review.note", target, {}),
        ("review.assign", target, {"assignee": None}),
        ("review.status", target, {"from": "confirmed", "to": "triaged", "note": False}),
        ("review.history", target, {}),
    ]
    assert all(target not in entry[1] for entry in review.audit(OPERATOR))


def test_what_members_are_told_shows_in_the_history(review: Review) -> None:
    record = review.indicator_of("bob.rawvalue@example.org")
    review.remote("set-status", record, "dismissed", "--member-note", "a test address")
    said = review.remote("set-status", record, "triaged", "--note", "reopened")
    assert said.stdout == f"indicator {record}: dismissed → triaged (note kept in its history)\n"
    told = review.remote(
        "set-status", record, "confirmed", "--member-note", "confirmed: rate-limit it"
    )
    assert told.stdout == (
        f"indicator {record}: triaged → confirmed (its members receive the note for members "
        "with their next pull)\n"
    )
    noted = review.remote("note", record, "[b]not markup[/b]", "--for-members")
    assert noted.stdout == (
        f"indicator {record}: note for members added (its members receive it with their next "
        "pull)\n"
    )
    table = review.remote("history", record)
    lines = table.stdout.splitlines()
    assert lines[:2] == [
        f"indicator {record}: confirmed, assigned to nobody",
        "note for members: [b]not markup[/b]",
    ]
    assert [row[1:] for row in table_cells(table.stdout)] == [
        [COORDINATOR, "new → dismissed", "-", "-", "a test address"],
        [COORDINATOR, "dismissed → triaged", "-", "reopened", "-"],
        [COORDINATOR, "triaged → confirmed", "-", "-", "confirmed: rate-limit it"],
        [COORDINATOR, "note for members", "-", "-", "[b]not markup[/b]"],
    ]
    (header,) = [line for line in lines if line.startswith("┃")]
    assert header.split("┃")[-2].strip() == "note for members"  # the column, once members are told


# ---------------------------------------------------------------------------------- settings


def test_remote_settings_are_checked_before_anything_is_asked(
    review: Review, tmp_path: Path
) -> None:
    hub = review.hub.target

    def run(*args: str) -> Result:
        return CliRunner().invoke(cli, ["review", *args, "indicators"])

    usage = run("--credential-file", str(review.files[COORDINATOR]), "--insecure")
    assert usage.exit_code == ExitCode.USAGE
    assert "--credential-file, --insecure only with --hub HOST:PORT" in usage.stderr
    usage = run("--hub", hub, "--insecure")
    assert usage.exit_code == ExitCode.USAGE
    assert "--hub needs --credential-file: the credential of a coordinator or admin" in (
        usage.stderr
    )
    coordinator = str(review.files[COORDINATOR])
    readable = credential_file(tmp_path, "readable", review.hub.credentials[COORDINATOR], 0o644)
    missing = tmp_path / "nowhere.credential"
    cases = [
        (
            ("--hub", hub, "--credential-file", str(readable), "--insecure"),
            ExitCode.CONFIG,
            f"hub credential file {readable}: permissions -rw-r--r-- let others read the "
            f"credential; run: chmod 600 {readable}",
        ),
        (
            ("--hub", hub, "--credential-file", str(missing), "--insecure"),
            ExitCode.CONFIG,
            f"hub credential file {missing}: no such file",
        ),
        (
            ("--hub", "10.0.0.1:8443", "--insecure", "--credential-file", coordinator),
            ExitCode.CONFIG,
            "refusing plaintext to 10.0.0.1: insecure connections are allowed only to loopback "
            "(127.0.0.0/8, ::1, localhost); use TLS",
        ),
        (
            ("--hub", "hub.example", "--credential-file", coordinator),
            ExitCode.CONFIG,
            "hub address 'hub.example' is not HOST:PORT (IPv6 as [ADDR]:PORT)",
        ),
    ]
    for args, code, message in cases:
        refused = run(*args)
        assert (refused.exit_code, refused.stdout) == (code, ""), refused.output
        assert refused.stderr == f"error: {message}\n"


def test_a_member_credential_is_refused_and_changes_nothing(review: Review) -> None:
    record = review.indicator_of("alice.rawvalue@example.com")
    for args in (("indicators",), ("set-status", record, "triaged", "--member-note", "x")):
        refused = review.remote(*args, who="m1")
        assert refused.exit_code == ExitCode.AUTH
        assert refused.stderr == (
            "error: not authorised by the hub: role 'member' may not call this service\n"
        )
    assert json.loads(review.local("history", record, "--json").stdout)["events"] == []


def test_an_unreachable_hub_is_a_network_error(review: Review) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{probe.getsockname()[1]}"
    refused = review.remote("history", "0" * 32, hub=closed)
    assert refused.exit_code == ExitCode.NETWORK
    assert refused.stderr.startswith(
        f"error: hub at {closed} unavailable for GetReviewHistory after 5 attempts: "
    )


def test_review_over_mtls(review: Review, tmp_path: Path) -> None:
    pki = issue_forum_pki(tmp_path, datetime.now(UTC), member=COORDINATOR)
    with tls_hub(review.hub.engine, pki, require_client_certificate=True) as target:
        base = ["review", "--hub", target, "--credential-file", str(review.files[COORDINATOR])]
        base += ["--ca-cert", str(pki.ca.cert)]
        mutual = ["--client-cert", str(pki.client.cert), "--client-key", str(pki.client.key)]
        listed = CliRunner().invoke(cli, [*base, *mutual, "campaigns", "--json"])
        assert listed.exit_code == 0, listed.output
        assert json.loads(listed.stdout)["total"] == 2
        without = CliRunner().invoke(cli, [*base, "campaigns"])
        assert without.exit_code == ExitCode.CONFIG
        assert "the hub requires a client certificate signed by its CA" in without.stderr
        mixed = CliRunner().invoke(cli, [*base, "--insecure", "campaigns"])
        assert mixed.exit_code == ExitCode.CONFIG
        assert mixed.stderr == (
            "error: TLS files were given for an insecure (plaintext) connection\n"
        )
