"""The ``sigshare-hub`` command: exit codes, exact output and JSON documents, asserted against
what the database then holds. Most tests run on a migrated SQLite temp file; the ones that take
``database_url`` run on PostgreSQL as well."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.pool import NullPool

from sigshare.client.exit_codes import ExitCode
from sigshare.hub.cli import cli
from sigshare.hub.cli.context import cli_actor
from sigshare.hub.cli.errors import exit_code_for
from sigshare.hub.domain import Principal, Role
from sigshare.hub.errors import (
    AlreadyExistsError,
    AuditChainError,
    DatabaseNotMigratedError,
    HubError,
    InvalidArgumentError,
    NotFoundError,
)
from sigshare.hub.services.credentials import parse_credential
from sigshare.hub.services.principals import authenticate
from sigshare.hub.storage import make_engine, migrate, session_scope
from sigshare.hub.storage.database import DATABASE_URL_ENV
from sigshare.sketch.bloom import MAX_FORUM_MEMBERS, BloomParams
from sigshare.sketch.estimators import false_shared_probability
from sigshare.sketch.kinds import KIND_NAMES
from sigshare.sketch.lsh import optimal_banding
from tests.support.cli import invoke_hub, invoke_hub_json, table_cells

EMAIL_SET = ["params", "set", "email", "--key-id", "k1", "--capacity", "1000000", "--fpr", "0.001"]
EMAIL_BLOOM = BloomParams.for_forum("email", "k1", 1_000_000, 0.001, 32)
"""What ``EMAIL_SET`` publishes: the forum rate 0.001 kept for the default 32 members."""
NO_FILTERS_NO_MEMBERS = {
    "filters": 0,
    "members": 0,
    "current": 0.0,
    "at_capacity": 0.0,
    "over_forum_size": False,
}
"""The false-shared rate of a kind before anyone joined or submitted: nothing can be shared."""
PROMPT_SET = ["params", "set-minhash", "prompt", "--key-id", "k1", "--threshold", "0.5"]
COMMANDS_NEEDING_A_CURRENT_SCHEMA = [
    ["db", "status"],
    ["member", "add", "acme"],
    ["member", "list"],
    ["member", "revoke", "acme"],
    EMAIL_SET,
    PROMPT_SET,
    ["params", "show"],
    ["review", "submissions"],
    ["audit", "verify"],
    ["audit", "show"],
]


@pytest.fixture(autouse=True)
def _operator(monkeypatch: pytest.MonkeyPatch) -> None:
    """Commands run as local user ``alice``, whatever the test machine's user is."""
    monkeypatch.setattr("getpass.getuser", lambda: "alice")
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)


def _authenticate(url: str, bearer: str) -> Principal | None:
    engine = make_engine(url)
    try:
        with session_scope(engine) as session:
            return authenticate(session, bearer, datetime.now(UTC))
    finally:
        engine.dispose()


def _actions(url: str) -> list[tuple[str, str, str]]:
    document = invoke_hub_json(url, "audit", "show")
    return [(entry["actor"], entry["action"], entry["target"]) for entry in document["entries"]]


# --- database ---------------------------------------------------------------------------------


def test_db_upgrade_creates_the_schema_then_reports_it_is_current(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    url = f"sqlite:///{path}"
    head = migrate.head_revision()

    first = invoke_hub(url, "db", "upgrade")
    assert first.exit_code == 0, first.output
    assert first.stdout == f"{url}: upgraded from revision <empty> to {head}\n"
    again = invoke_hub(url, "db", "upgrade")
    assert again.stdout == f"{url}: already at revision {head} (head)\n"
    assert invoke_hub_json(url, "db", "upgrade") == {
        "database": url,
        "from": head,
        "to": head,
        "upgraded": False,
    }
    status = invoke_hub(url, "db", "status")
    assert (status.exit_code, status.stdout) == (0, f"{url}: at revision {head} (head)\n")
    assert invoke_hub_json(url, "db", "status") == {
        "database": url,
        "current": head,
        "head": head,
        "up_to_date": True,
    }


def test_db_upgrade_json_reports_the_first_migration(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    assert invoke_hub_json(url, "db", "upgrade") == {
        "database": url,
        "from": None,
        "to": migrate.head_revision(),
        "upgraded": True,
    }


@pytest.mark.parametrize("command", COMMANDS_NEEDING_A_CURRENT_SCHEMA, ids=" ".join)
def test_commands_refuse_an_unmigrated_database(tmp_path: Path, command: list[str]) -> None:
    path = tmp_path / "empty.db"
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    with engine.connect() as connection:  # creates the file, no tables
        connection.exec_driver_sql("SELECT 1")

    result = invoke_hub(url, *command)

    assert result.exit_code == ExitCode.CONFIG
    assert result.stdout == ""
    expected = DatabaseNotMigratedError(None, migrate.head_revision())
    assert result.stderr == f"error: {expected}\n"
    assert inspect(engine).get_table_names() == []  # nothing was created behind the refusal
    engine.dispose()


def test_commands_refuse_a_missing_sqlite_file_without_creating_it(tmp_path: Path) -> None:
    path = tmp_path / "typo.db"
    document = invoke_hub_json(f"sqlite:///{path}", "member", "list", code=ExitCode.CONFIG)
    assert document == {
        "error": f"no hub database at {path}: check --db or $SIGSHARE_HUB_DB, "
        "or create it with `sigshare-hub db upgrade`",
        "exit_code": 3,
        "status": "config",
    }
    assert not path.exists()


def test_refusal_of_an_unmigrated_database_on_every_backend(empty_database_url: str) -> None:
    result = invoke_hub(empty_database_url, "member", "list", "--json")
    assert result.exit_code == ExitCode.CONFIG
    document = json.loads(result.stdout)
    assert document["status"] == "config"
    assert "`sigshare-hub db upgrade`" in document["error"]


def test_the_default_database_comes_from_the_environment(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DATABASE_URL_ENV, sqlite_url)
    result = CliRunner().invoke(cli, ["db", "status"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"{sqlite_url}: at revision ")


def test_an_unreachable_database_is_a_config_error_with_the_password_masked() -> None:
    url = "postgresql+psycopg2://root:s3cret-pw@127.0.0.1:1/hub"
    result = invoke_hub(url, "member", "list")
    assert result.exit_code == ExitCode.CONFIG
    assert result.stderr.startswith(
        "error: cannot use the database at postgresql+psycopg2://root:***@127.0.0.1:1/hub: "
    )
    assert "s3cret-pw" not in result.output


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u:pw-1@db/hub", "unsupported database backend 'mysql' in mysql://u:***@db/hub"),
        ("not a url pw-1", "--db is not a valid database URL"),
        (
            "postgresql+pg8000://u:pw-1@db/hub",
            "cannot load the database driver for postgresql+pg8000://u:***",
        ),
    ],
)
def test_unusable_database_urls_are_config_errors(url: str, message: str) -> None:
    result = invoke_hub(url, "params", "show")
    assert result.exit_code == ExitCode.CONFIG
    assert result.stderr.startswith(f"error: {message}")
    assert "pw-1" not in result.output


# --- members ----------------------------------------------------------------------------------


def test_member_add_prints_only_the_credential_and_it_authenticates(database_url: str) -> None:
    result = invoke_hub(database_url, "member", "add", "acme")

    assert result.exit_code == 0, result.output
    credential = result.stdout.removesuffix("\n")
    assert result.stdout == f"{credential}\n"
    assert credential.startswith("sgs1_")
    assert result.stderr == (
        "registered member acme; its credential (above) is shown this once: "
        "the hub keeps only a hash of it\n"
    )
    principal = _authenticate(database_url, credential)
    assert principal is not None
    assert (principal.name, principal.role) == ("acme", Role.MEMBER)


def test_member_add_json_and_the_credential_is_never_shown_again(sqlite_url: str) -> None:
    document = invoke_hub_json(sqlite_url, "member", "add", "ops", "--role", "admin")

    assert set(document) == {"name", "role", "created_at", "credential", "warnings"}
    assert (document["name"], document["role"], document["warnings"]) == ("ops", "admin", [])
    # The secret part may itself contain "_" (URL-safe base64): parse it the hub's way.
    parsed = parse_credential(document["credential"])
    assert parsed is not None
    secret = parsed.secret
    for command in (["member", "list"], ["audit", "show"], ["params", "show"]):
        for extra in ([], ["--json"]):
            shown = invoke_hub(sqlite_url, *command, *extra)
            assert shown.exit_code == 0
            assert secret not in shown.output
    principal = _authenticate(sqlite_url, document["credential"])
    assert principal is not None
    assert principal.role is Role.ADMIN
    assert principal.created_at.isoformat() == document["created_at"]


def _forum_size_warning(members: int, at_capacity: float, compared: str = "above") -> str:
    """The warning for ``email`` published with --fpr 0.01 --max-members 3."""
    return (
        f"email: the forum has {members} members but its filters are sized for 3: with every "
        "filter full, a value no other member holds would be reported as shared at a rate of "
        f"{at_capacity:.3g}, {compared} the published 0.01; raise it with "
        f"`sigshare-hub params set email … --max-members {members}` (members then rebuild "
        "their filters)"
    )


def test_member_add_warns_once_the_members_exceed_a_kinds_forum_size(sqlite_url: str) -> None:
    assert (
        invoke_hub(sqlite_url, *EMAIL_SET[:-2], "--fpr", "0.01", "--max-members", "3").exit_code
        == 0
    )
    assert invoke_hub(sqlite_url, *PROMPT_SET).exit_code == 0  # MinHash families have no forum size
    for name in ("m1", "m2"):
        assert invoke_hub_json(sqlite_url, "member", "add", name)["warnings"] == []
    third = invoke_hub(sqlite_url, "member", "add", "m3")
    assert third.exit_code == 0, third.output
    assert third.stderr == (
        "registered member m3; its credential (above) is shown this once: the hub keeps only a "
        "hash of it\n"
    )
    assert invoke_hub(sqlite_url, "params", "show").stderr == ""  # at the forum size: no warning

    # Four members, filters sized for three: a value no other member holds is reported as
    # shared when any of the three other filters (each at 0.01/2 at capacity) misfires.
    four = false_shared_probability([0.01 / 2] * 3, 1)
    assert f"{four:.3g}" == "0.0149"  # 1 − 0.995³, above the published 0.01
    fourth = invoke_hub(sqlite_url, "member", "add", "m4")
    assert fourth.exit_code == 0, fourth.output
    credential = fourth.stdout.removesuffix("\n")
    assert fourth.stdout == f"{credential}\n"  # still the credential alone on stdout
    assert _authenticate(sqlite_url, credential) is not None
    assert fourth.stderr == (
        f"warning: {_forum_size_warning(4, four)}\n"
        "registered member m4; its credential (above) is shown this once: the hub keeps only a "
        "hash of it\n"
    )
    five = false_shared_probability([0.01 / 2] * 4, 1)
    assert invoke_hub_json(sqlite_url, "member", "add", "m5")["warnings"] == [
        _forum_size_warning(5, five)
    ]
    shown = invoke_hub(sqlite_url, "params", "show")
    assert (shown.exit_code, shown.stderr) == (0, f"warning: {_forum_size_warning(5, five)}\n")
    rate = invoke_hub_json(sqlite_url, "params", "show")["kinds"][0]["false_shared_rate"]
    assert (rate["members"], rate["at_capacity"], rate["over_forum_size"]) == (5, five, True)

    # At quorum 3 two of the four other filters must misfire: 5 members stay within the rate.
    quorum_three = invoke_hub(sqlite_url, *EMAIL_SET[:-2], "--fpr", "0.01", "--quorum", "3")
    within = false_shared_probability([0.01 / 2] * 4, 2)
    assert within < 0.01
    assert quorum_three.stderr == f"warning: {_forum_size_warning(5, within, 'still within')}\n"


def test_member_add_refuses_a_duplicate_and_prints_no_credential(sqlite_url: str) -> None:
    first = invoke_hub(sqlite_url, "member", "add", "acme")
    assert first.exit_code == 0

    again = invoke_hub(sqlite_url, "member", "add", "acme", "--role", "coordinator")
    assert again.exit_code == ExitCode.INPUT
    assert again.stdout == ""
    assert again.stderr == "error: principal 'acme' already exists\n"
    listed = invoke_hub_json(sqlite_url, "member", "list")["principals"]
    assert [(p["name"], p["role"]) for p in listed] == [("acme", "member")]
    assert _authenticate(sqlite_url, first.stdout.strip()) is not None


def test_member_add_shows_a_bad_name_literally(sqlite_url: str) -> None:
    result = invoke_hub(sqlite_url, "member", "add", "[x]")
    assert result.exit_code == ExitCode.INPUT
    assert result.stderr.startswith("error: principal name '[x]' is invalid: use ")


def test_member_add_rejects_an_unknown_role_as_usage(sqlite_url: str) -> None:
    result = invoke_hub(sqlite_url, "member", "add", "acme", "--role", "root")
    assert result.exit_code == ExitCode.USAGE
    assert invoke_hub_json(sqlite_url, "member", "list") == {"principals": []}


def test_member_list_shows_names_roles_and_times_but_no_secrets(sqlite_url: str) -> None:
    assert invoke_hub(sqlite_url, "member", "list").stdout == (
        "no principals yet: add one with `sigshare-hub member add NAME`\n"
    )
    invoke_hub(sqlite_url, "member", "add", "zeta", "--role", "coordinator")
    invoke_hub(sqlite_url, "member", "add", "acme")
    invoke_hub(sqlite_url, "member", "revoke", "zeta")

    document = invoke_hub_json(sqlite_url, "member", "list")
    assert [sorted(p) for p in document["principals"]] == [
        ["created_at", "name", "revoked_at", "role"]
    ] * 2
    acme, zeta = document["principals"]
    assert (acme["name"], acme["role"], acme["revoked_at"]) == ("acme", "member", None)
    assert (zeta["name"], zeta["role"]) == ("zeta", "coordinator")
    assert zeta["revoked_at"] is not None

    table = table_cells(invoke_hub(sqlite_url, "member", "list").stdout)
    assert [[*row[:2], row[3] == "-"] for row in table] == [
        ["acme", "member", True],
        ["zeta", "coordinator", False],
    ]
    assert table[0][2].endswith("Z")


def test_member_revoke_takes_effect_at_once(database_url: str) -> None:
    credential = invoke_hub(database_url, "member", "add", "acme").stdout.strip()
    assert _authenticate(database_url, credential) is not None

    document = invoke_hub_json(database_url, "member", "revoke", "acme")
    assert (document["name"], document["role"]) == ("acme", "member")
    assert document["revoked_at"] is not None
    assert _authenticate(database_url, credential) is None


def test_member_revoke_plain_output(sqlite_url: str) -> None:
    invoke_hub(sqlite_url, "member", "add", "acme")
    result = invoke_hub(sqlite_url, "member", "revoke", "acme")
    assert result.exit_code == 0
    assert result.stdout.startswith("revoked member acme at ")
    assert result.stdout.endswith("Z: its credential is refused from then on\n")


def test_member_revoke_of_an_unknown_name_is_an_input_error(sqlite_url: str) -> None:
    document = invoke_hub_json(sqlite_url, "member", "revoke", "ghost", code=ExitCode.INPUT)
    assert document == {
        "error": str(NotFoundError("principal", "ghost")),
        "exit_code": 5,
        "status": "input",
    }
    assert _actions(sqlite_url) == []


# --- parameters -------------------------------------------------------------------------------


def test_params_set_publishes_derived_bloom_parameters(database_url: str) -> None:
    document = invoke_hub_json(database_url, *EMAIL_SET)

    updated_at = document.pop("updated_at")
    assert document == {
        "kind": "email",
        "key_id": "k1",
        "capacity": 1_000_000,
        "forum_fpr": 0.001,
        "max_members": 32,
        "target_fpr": 0.001 / 31,
        "m": EMAIL_BLOOM.m,
        "k": EMAIL_BLOOM.k,
        "quorum": 2,
        "retention_days": 30,
        "reveal_members": False,
        "replace_interval_seconds": 3600,
        "digest": EMAIL_BLOOM.digest().hex(),
        "false_shared_rate": NO_FILTERS_NO_MEMBERS,
        "members_must_resubmit": False,
    }
    del document["members_must_resubmit"]
    assert invoke_hub_json(database_url, "params", "show") == {
        "kinds": [{**document, "updated_at": updated_at}],
        "minhash_families": [],
    }


def test_params_set_sizes_filters_for_the_forum_rate_and_size(database_url: str) -> None:
    for name in ("m1", "m2", "m3"):
        assert invoke_hub(database_url, "member", "add", name).exit_code == 0
    forum = [*EMAIL_SET[:-2], "--fpr", "0.002", "--max-members", "8", "--quorum", "3"]
    document = invoke_hub_json(database_url, *forum, "--replace-interval", "30m")

    bloom = BloomParams.for_forum("email", "k1", 1_000_000, 0.002, 8)
    assert bloom.target_fpr == 0.002 / 7
    assert {key: document[key] for key in ("forum_fpr", "max_members", "target_fpr")} == {
        "forum_fpr": 0.002,
        "max_members": 8,
        "target_fpr": 0.002 / 7,
    }
    assert (document["m"], document["k"], document["digest"]) == (
        bloom.m,
        bloom.k,
        bloom.digest().hex(),
    )
    assert (document["quorum"], document["replace_interval_seconds"]) == (3, 1800)
    # No filter yet: nothing is reported as shared now. At capacity a value no other member
    # holds needs quorum − 1 = 2 of the other 2 members' filters to misfire: (0.002/7)².
    at_capacity = false_shared_probability([0.002 / 7] * 2, 2)
    assert at_capacity == (0.002 / 7) ** 2
    assert document["false_shared_rate"] == {
        "filters": 0,
        "members": 3,
        "current": 0.0,
        "at_capacity": at_capacity,
        "over_forum_size": False,
    }
    [shown] = invoke_hub_json(database_url, "params", "show")["kinds"]
    assert shown == {
        key: value for key, value in document.items() if key != "members_must_resubmit"
    }

    # Options left out keep their value: the interval and the forum size stay as published.
    kept = invoke_hub_json(database_url, *EMAIL_SET[:-2], "--fpr", "0.002")
    assert (kept["max_members"], kept["replace_interval_seconds"], kept["m"]) == (8, 1800, bloom.m)
    for interval, seconds in [("0", 0), ("2h", 7200), ("45", 45), ("7d", 604_800)]:
        changed = invoke_hub_json(database_url, *EMAIL_SET, "--replace-interval", interval)
        assert changed["replace_interval_seconds"] == seconds, interval


def test_params_set_plain_output_is_the_kind_row_and_its_digest(sqlite_url: str) -> None:
    result = invoke_hub(sqlite_url, *EMAIL_SET, "--quorum", "3", "--reveal-members")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert table_cells(result.stdout) == [
        [
            "email",
            "k1",
            "1,000,000",
            "0.001",
            "32",
            "3.23e-05",
            "21,524,992",
            "15",
            "2.57",
            "3",
            "30",
            "3600 s",
            "yes",
        ]
    ]
    assert (EMAIL_BLOOM.m, EMAIL_BLOOM.k) == (21_524_992, 15)
    assert result.stdout.endswith(f"\ndigest {EMAIL_BLOOM.digest().hex()}\n")

    eight = invoke_hub(sqlite_url, *EMAIL_SET, "--max-members", "8", "--replace-interval", "30m")
    assert eight.exit_code == 0, eight.output
    bloom = BloomParams.for_forum("email", "k1", 1_000_000, 0.001, 8)
    assert table_cells(eight.stdout) == [
        [
            "email",
            "k1",
            "1,000,000",
            "0.001",
            "8",
            "0.000143",
            f"{bloom.m:,}",
            str(bloom.k),
            f"{bloom.m / 8 / (1 << 20):.2f}",
            "3",
            "30",
            "1800 s",
            "yes",
        ]
    ]


def test_params_set_refuses_a_malformed_replace_interval_as_usage(sqlite_url: str) -> None:
    result = invoke_hub(sqlite_url, *EMAIL_SET, "--replace-interval", "soon")
    assert result.exit_code == ExitCode.USAGE
    assert result.stdout == ""
    assert (
        "Invalid value for '--replace-interval': 'soon' is not a duration such as 3600, 90m, "
        "1h or 0"
    ) in result.stderr
    assert invoke_hub_json(sqlite_url, "params", "show") == {"kinds": [], "minhash_families": []}
    assert _actions(sqlite_url) == []


def test_params_set_warns_when_members_must_resubmit(sqlite_url: str) -> None:
    invoke_hub(sqlite_url, *EMAIL_SET)

    policy_only = invoke_hub(sqlite_url, *EMAIL_SET, "--quorum", "4", "--retention-days", "7")
    assert (policy_only.exit_code, policy_only.stderr) == (0, "")
    interval_only = invoke_hub(sqlite_url, *EMAIL_SET, "--replace-interval", "0")
    assert (interval_only.exit_code, interval_only.stderr) == (0, "")

    result = invoke_hub(
        sqlite_url, "params", "set", "email", "--key-id", "k2", "--capacity", "5000"
    )
    assert result.exit_code == ExitCode.USAGE  # --fpr is required

    new_epoch = invoke_hub(
        sqlite_url,
        "params",
        "set",
        "email",
        "--key-id",
        "k2",
        "--capacity",
        "5000",
        "--fpr",
        "0.01",
    )
    assert new_epoch.exit_code == 0
    bloom = BloomParams.for_forum("email", "k2", 5000, 0.01, 32)
    assert new_epoch.stderr == (
        "warning: email filters change from key_id k1, m=21524992, k=15, capacity 1000000 to "
        f"key_id k2, m={bloom.m}, k={bloom.k}, capacity 5000: members must resubmit\n"
    )
    resized = invoke_hub(sqlite_url, *EMAIL_SET[:-2], "--fpr", "0.01", "--max-members", "8")
    assert resized.exit_code == 0
    smaller = BloomParams.for_forum("email", "k1", 1_000_000, 0.01, 8)
    assert resized.stderr == (
        f"warning: email filters change from key_id k2, m={bloom.m}, k={bloom.k}, capacity 5000 "
        f"to key_id k1, m={smaller.m}, k={smaller.k}, capacity 1000000: members must resubmit\n"
    )
    kinds = invoke_hub_json(sqlite_url, "params", "show")["kinds"]
    assert [
        (p["key_id"], p["quorum"], p["retention_days"], p["replace_interval_seconds"])
        for p in kinds
    ] == [("k1", 4, 7, 0)]


def test_params_set_refuses_an_unknown_kind(sqlite_url: str) -> None:
    result = invoke_hub(sqlite_url, "params", "set", "shoe", "--key-id", "k1", "--capacity", "9")
    assert result.exit_code == ExitCode.USAGE
    result = invoke_hub(
        sqlite_url, "params", "set", "shoe", "--key-id", "k1", "--capacity", "9", "--fpr", "0.1"
    )
    assert result.exit_code == ExitCode.INPUT
    assert result.stderr == f"error: unknown kind 'shoe'; known kinds: {', '.join(KIND_NAMES)}\n"
    assert invoke_hub_json(sqlite_url, "params", "show") == {"kinds": [], "minhash_families": []}
    assert _actions(sqlite_url) == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--fpr", "1.5"], "forum FPR must be in (0, 1), got 1.5"),
        (["--fpr", "0.1", "--capacity", "0"], "capacity must be positive, got 0"),
        (["--fpr", "0.1", "--quorum", "1"], "quorum must be at least 2, got 1"),
        (
            ["--fpr", "0.1", "--max-members", "1"],
            f"max_members must be between 2 and {MAX_FORUM_MEMBERS}, got 1",
        ),
        (
            ["--fpr", "0.1", "--max-members", str(MAX_FORUM_MEMBERS + 1)],
            f"max_members must be between 2 and {MAX_FORUM_MEMBERS}, got {MAX_FORUM_MEMBERS + 1}",
        ),
        (
            ["--fpr", "0.1", "--max-members", "3", "--quorum", "4"],
            "quorum 4 exceeds the forum size of 3 members",
        ),
        (
            ["--fpr", "0.1", "--replace-interval", "8d"],
            "replace interval must be 0 to 604800 seconds, got 691200",
        ),
    ],
)
def test_params_set_refuses_invalid_values_as_input_errors(
    sqlite_url: str, options: list[str], message: str
) -> None:
    result = invoke_hub(
        sqlite_url, "params", "set", "email", "--key-id", "k1", "--capacity", "9", *options
    )
    assert result.exit_code == ExitCode.INPUT
    assert (result.stdout, result.stderr) == ("", f"error: {message}\n")
    assert invoke_hub_json(sqlite_url, "params", "show") == {"kinds": [], "minhash_families": []}


def test_params_set_minhash_publishes_defaults_and_banding(database_url: str) -> None:
    document = invoke_hub_json(database_url, *PROMPT_SET)

    banding = optimal_banding(0.5, 128)
    assert {key: document[key] for key in document if key not in ("updated_at", "digest")} == {
        "family": "prompt",
        "key_id": "k1",
        "num_perm": 128,
        "shingle_unit": "word",
        "shingle_size": 1,
        "drop_stopwords": True,
        "core_rules": 2,
        "threshold": 0.5,
        "cluster_threshold": 0.5,
        "bands": banding.bands,
        "rows": banding.rows,
        "quorum": 2,
        "retention_days": 30,
        "reveal_members": False,
        "members_must_resubmit": False,
    }
    reshingled = invoke_hub(
        database_url, *PROMPT_SET, "--shingle-unit", "char", "--shingle-size", "5"
    )
    assert reshingled.exit_code == 0
    assert reshingled.stderr == (
        "warning: prompt signatures change from key_id k1, P=128, word 1-grams without "
        'stopwords to key_id k1, P=128, char 5-grams: members must resubmit. Tell them: "the '
        "forum's prompt parameters changed; your next `sigshare sync` (tonight's run) resubmits "
        "your clusters — nothing to do unless you pinned an old client, which refuses the new "
        'digest: upgrade it first." Campaigns reappear as members resubmit.\n'
    )
    new_epoch = invoke_hub(database_url, *PROMPT_SET, "--shingle-unit", "char", "--key-id", "k2")
    assert new_epoch.exit_code == 0
    assert "to key_id k2" in new_epoch.stderr
    assert (
        "Tell them: \"the forum's key epoch is now k2; put its forum secret in your "
        'configuration before your next `sigshare sync`, which then resubmits your clusters."'
    ) in " ".join(new_epoch.stderr.split())
    assert "nothing to do" not in new_epoch.stderr


def test_params_show_tables(sqlite_url: str) -> None:
    assert invoke_hub(sqlite_url, "params", "show").stdout == (
        "no indicator kinds configured: use `sigshare-hub params set KIND …`\n"
        "no MinHash families configured: use `sigshare-hub params set-minhash …`\n"
    )
    invoke_hub(sqlite_url, *EMAIL_SET, "--max-members", "8", "--quorum", "3")
    invoke_hub(
        sqlite_url,
        *["params", "set", "payment_fingerprint", "--key-id", "k1", "--capacity", "1000"],
        *["--fpr", "0.01", "--retention-days", "90", "--replace-interval", "0"],
    )
    invoke_hub(sqlite_url, *PROMPT_SET, "--num-perm", "64", "--quorum", "3")
    for name in ("m1", "m2", "m3"):
        invoke_hub(sqlite_url, "member", "add", name)
    invoke_hub(sqlite_url, "member", "add", "ops", "--role", "admin")  # not a member: not counted

    result = invoke_hub(sqlite_url, "params", "show")
    assert (result.exit_code, result.stderr) == (0, "")
    banding = optimal_banding(0.5, 64)
    email = BloomParams.for_forum("email", "k1", 1_000_000, 0.001, 8)
    small = BloomParams.for_forum("payment_fingerprint", "k1", 1000, 0.01, 32)
    email_row = ["email", "k1", "1,000,000", "0.001", "8", "0.000143", f"{email.m:,}"]
    email_row += [str(email.k), "2.20", "3", "30", "3600 s", "no"]
    small_row = ["payment_fingerprint", "k1", "1,000", "0.01", "32", "0.000323", f"{small.m:,}"]
    small_row += [str(small.k), "0.00", "2", "90", "0 s", "no"]
    # With 3 members, a value no other member holds is shared at quorum 3 when both other
    # filters misfire, at quorum 2 when either does (each at its filter FPR at capacity).
    email_rate = false_shared_probability([0.001 / 7] * 2, 2)
    small_rate = false_shared_probability([0.01 / 31] * 2, 1)
    assert (f"{email_rate:.3g}", f"{small_rate:.3g}") == ("2.04e-08", "0.000645")
    assert table_cells(result.stdout) == [
        email_row,
        small_row,
        ["email", "0", "3 of 8", "0", "2.04e-08"],
        ["payment_fingerprint", "0", "3 of 32", "0", "0.000645"],
        [
            "prompt",
            "k1",
            "64",
            "word 1-grams without stopwords",
            "majority − boilerplate",
            "0.5",
            "0.5",
            f"{banding.bands}×{banding.rows}",
            "3",
            "30",
            "no",
        ],
    ]
    assert "false-shared rate (a value no other member holds, reported as shared)" in result.stdout
    kinds = invoke_hub_json(sqlite_url, "params", "show")["kinds"]
    assert [(p["kind"], p["false_shared_rate"]) for p in kinds] == [
        (
            "email",
            {
                "filters": 0,
                "members": 3,
                "current": 0.0,
                "at_capacity": email_rate,
                "over_forum_size": False,
            },
        ),
        (
            "payment_fingerprint",
            {
                "filters": 0,
                "members": 3,
                "current": 0.0,
                "at_capacity": small_rate,
                "over_forum_size": False,
            },
        ),
    ]


# --- audit ------------------------------------------------------------------------------------


def test_admin_commands_are_audited_with_the_local_user(sqlite_url: str) -> None:
    invoke_hub(sqlite_url, "member", "add", "acme")
    invoke_hub(sqlite_url, *EMAIL_SET)
    invoke_hub(sqlite_url, *PROMPT_SET)
    invoke_hub(sqlite_url, "member", "revoke", "acme")

    assert _actions(sqlite_url) == [
        ("cli:alice", "principal.revoke", "acme"),
        ("cli:alice", "params.set", "minhash:prompt"),
        ("cli:alice", "params.set", "email"),
        ("cli:alice", "principal.add", "acme"),
    ]
    only_adds = invoke_hub_json(sqlite_url, "audit", "show", "--action", "principal.add")["entries"]
    assert [entry["details"] for entry in only_adds] == [{"role": "member"}]
    assert invoke_hub_json(sqlite_url, "audit", "show", "--actor", "cli:bob") == {
        "total": 0,
        "first": 1,
        "page_size": 50,
        "next_cursor": None,
        "previous_cursor": None,
        "entries": [],
    }
    newest = invoke_hub_json(sqlite_url, "audit", "show", "--page-size", "1")
    assert ([entry["id"] for entry in newest["entries"]], newest["total"]) == ([4], 4)
    older = invoke_hub_json(
        sqlite_url, "audit", "show", "--page-size", "1", "--cursor", newest["next_cursor"]
    )
    assert ([entry["id"] for entry in older["entries"]], older["first"]) == ([3], 2)


def test_audit_show_table_and_limits(sqlite_url: str) -> None:
    assert invoke_hub(sqlite_url, "audit", "show").stdout == "no matching audit entries\n"
    invoke_hub(sqlite_url, "member", "add", "acme")
    rows = table_cells(invoke_hub(sqlite_url, "audit", "show").stdout)
    assert [[row[0], *row[2:]] for row in rows] == [
        ["1", "cli:alice", "principal.add", "acme", '{"role":"member"}']
    ]
    assert invoke_hub(sqlite_url, "audit", "show", "--page-size", "0").exit_code == ExitCode.USAGE
    assert invoke_hub(sqlite_url, "audit", "show", "--limit", "5").exit_code == ExitCode.USAGE
    foreign = invoke_hub(sqlite_url, "audit", "show", "--cursor", "p1.5")
    assert (foreign.exit_code, foreign.stderr) == (
        ExitCode.INPUT,
        "error: page token is not one this hub issued\n",
    )


def test_audit_verify_reports_the_count_and_the_head_hash(database_url: str) -> None:
    assert invoke_hub_json(database_url, "audit", "verify") == {
        "entries": 0,
        "head_id": None,
        "head_hash": None,
    }
    invoke_hub(database_url, "member", "add", "acme")
    invoke_hub(database_url, *EMAIL_SET)

    engine = create_engine(database_url, poolclass=NullPool)
    with engine.connect() as connection:
        head_id, head_hash = connection.execute(
            text("SELECT id, entry_hash FROM audit_log ORDER BY id DESC LIMIT 1")
        ).one()
    engine.dispose()
    assert invoke_hub_json(database_url, "audit", "verify") == {
        "entries": 2,
        "head_id": head_id,
        "head_hash": bytes(head_hash).hex(),
    }
    plain = invoke_hub(database_url, "audit", "verify")
    assert plain.stdout == (
        f"audit log intact: 2 entries checked; head entry {head_id} hash {bytes(head_hash).hex()}\n"
    )


def test_audit_verify_detects_a_tampered_entry(database_url: str) -> None:
    invoke_hub(database_url, "member", "add", "acme")
    invoke_hub(database_url, "member", "add", "ops", "--role", "admin")
    invoke_hub(database_url, "member", "revoke", "acme")
    engine = create_engine(database_url, poolclass=NullPool)
    with engine.begin() as connection:
        victim = connection.execute(
            text("SELECT id FROM audit_log WHERE target = 'ops'")
        ).scalar_one()
        connection.execute(
            text("UPDATE audit_log SET details = :details WHERE id = :id"),
            {"details": '{"role":"member"}', "id": victim},
        )
    engine.dispose()

    result = invoke_hub(database_url, "audit", "verify")
    expected = AuditChainError(victim, "entry hash does not match its contents")
    assert result.exit_code == ExitCode.FAILURE
    assert result.stdout == ""
    assert result.stderr == f"error: {expected}\n"
    assert invoke_hub_json(database_url, "audit", "verify", code=ExitCode.FAILURE) == {
        "error": str(expected),
        "exit_code": 1,
        "status": "failure",
    }


# --- the command itself -----------------------------------------------------------------------


def test_every_command_group_is_listed_in_help() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    section = result.stdout.split("Commands:")[1].splitlines()
    assert [line.split()[0] for line in section if line.strip()] == [
        "audit",
        "db",
        "export",
        "health",
        "keys",
        "member",
        "params",
        "review",
        "serve",
        "web",
    ]


def test_the_actor_falls_back_to_cli_without_a_login_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert cli_actor() == "cli:alice"

    def no_user() -> str:
        raise OSError("no login name")

    monkeypatch.setattr("getpass.getuser", no_user)
    assert cli_actor() == "cli"


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidArgumentError("x"), ExitCode.INPUT),
        (NotFoundError("principal", "x"), ExitCode.INPUT),
        (AlreadyExistsError("x"), ExitCode.INPUT),
        (DatabaseNotMigratedError(None, "0001"), ExitCode.CONFIG),
        (AuditChainError(1, "x"), ExitCode.FAILURE),
        (HubError("x"), ExitCode.FAILURE),
    ],
)
def test_the_exit_code_table(error: HubError, code: ExitCode) -> None:
    assert exit_code_for(error) is code
