"""``sigshare-hub member keys|approve-keys|revoke --rotate`` and ``sigshare-hub keys status``:
exit codes, exact output and JSON documents, against what the services then report.

Principals and rotations are set up through the services (keys registered and envelopes
sealed as the member and custodian clients would); the commands under test run in process.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from sigshare.client.exit_codes import ExitCode
from sigshare.hub.cli import cli
from sigshare.hub.cli.context import format_time
from sigshare.hub.domain import Role
from sigshare.hub.services import keyring
from sigshare.hub.storage import make_engine, session_scope
from sigshare.hub.storage.database import DATABASE_URL_ENV
from sigshare.hub.storage.principals import PrincipalRepository
from tests.support.cli import invoke_hub, invoke_hub_json, table_cells
from tests.support.hub_keys import (
    SETUP_ACTOR,
    add_principals,
    keys_of,
    register,
    register_and_approve,
    sealed,
)

T0 = datetime(2026, 5, 4, 9, 30, tzinfo=UTC)
KEEPER = "keeper"
ROLES = {KEEPER: Role.CUSTODIAN, "coord": Role.COORDINATOR, "m1": Role.MEMBER, "m2": Role.MEMBER}
ROTATE_HINT = (
    "a custodian runs `sigshare keys rotate --key-id NEW_ID`, then an admin "
    "`sigshare-hub params epoch NEW_ID`"
)


@pytest.fixture(autouse=True)
def _operator(monkeypatch: pytest.MonkeyPatch) -> None:
    """Commands run as local user ``alice``, whatever the test machine's user is."""
    monkeypatch.setattr("getpass.getuser", lambda: "alice")
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)


@pytest.fixture
def forum(sqlite_engine: Engine) -> Engine:
    add_principals(sqlite_engine, ROLES, T0)
    return sqlite_engine


def _url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def _rotate(engine: Engine, key_id: str = "epoch-2", now: datetime = T0) -> None:
    """The custodian's rotation to ``key_id``, sealed to every current recipient."""
    with session_scope(engine) as session:
        recipients = keyring.list_recipients(session, now=now).recipients
        custodian = PrincipalRepository(session).get_by_name(KEEPER)
        assert custodian is not None
        keyring.upload_envelopes(
            session,
            custodian=custodian,
            key_id=key_id,
            activate_at=T0 + timedelta(days=1),
            envelopes=sealed(
                recipients,
                key_id=key_id,
                custodian=KEEPER,
                created_at=now,
                activate_at=T0 + timedelta(days=1),
            ),
            now=now,
        )


def _fetch(engine: Engine, name: str, now: datetime) -> None:
    with session_scope(engine) as session:
        member = PrincipalRepository(session).get_by_name(name)
        assert member is not None
        keyring.fetch_envelopes(session, principal=member, now=now)


# ---------------------------------------------------------------------------------- member keys


def test_member_add_registers_a_custodian(sqlite_url: str) -> None:
    document = invoke_hub_json(sqlite_url, "member", "add", "secretariat", "--role", "custodian")
    assert (document["name"], document["role"], document["warnings"]) == (
        "secretariat",
        "custodian",
        [],
    )
    listed = invoke_hub_json(sqlite_url, "member", "list")["principals"]
    assert [(p["name"], p["role"]) for p in listed] == [("secretariat", "custodian")]


def test_member_keys_before_any_registration(forum: Engine) -> None:
    url = _url(forum)
    result = invoke_hub(url, "member", "keys", "m1")
    assert (result.exit_code, result.stdout) == (
        0,
        "member m1 has registered no keys: it runs `sigshare keys register`\n",
    )
    coordinator = invoke_hub(url, "member", "keys", "coord")
    assert coordinator.stdout == (
        "coordinator coord holds no keys: only members and custodians register keys\n"
    )
    unknown = invoke_hub(url, "member", "keys", "ghost")
    assert (unknown.exit_code, unknown.stderr) == (
        ExitCode.INPUT,
        "error: principal 'ghost' not found\n",
    )


def test_member_keys_lists_every_registration_and_the_latest_envelope(forum: Engine) -> None:
    url = _url(forum)
    register_and_approve(forum, [KEEPER, "m1"], T0)
    rekeyed = keys_of("m1", 1)
    register(forum, "m1", T0 + timedelta(days=1), keys=rekeyed)
    _rotate(forum, now=T0 + timedelta(days=2))

    result = invoke_hub(url, "member", "keys", "m1")

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("keys of member m1\n")
    assert table_cells(result.stdout) == [
        [
            keys_of("m1").fingerprint,
            "approved",
            format_time(T0),
            format_time(T0),
            SETUP_ACTOR,
            "-",
        ],
        [rekeyed.fingerprint, "pending", format_time(T0 + timedelta(days=1)), "-", "-", "-"],
    ]
    assert result.stdout.endswith("latest rotation epoch-2: envelope not fetched yet\n")

    _fetch(forum, "m1", T0 + timedelta(days=3))
    fetched = invoke_hub(url, "member", "keys", "m1")
    assert fetched.stdout.endswith(
        f"latest rotation epoch-2: envelope fetched at {format_time(T0 + timedelta(days=3))} "
        f"(last {format_time(T0 + timedelta(days=3))})\n"
    )
    assert invoke_hub_json(url, "member", "keys", "m1") == {
        "name": "m1",
        "role": "member",
        "created_at": T0.isoformat(),
        "revoked_at": None,
        "registrations": [
            {
                "fingerprint": keys_of("m1").fingerprint,
                "signing_fingerprint": keys_of("m1").signing_fingerprint,
                "state": "approved",
                "registered_at": T0.isoformat(),
                "approved_at": T0.isoformat(),
                "approved_by": SETUP_ACTOR,
                "retired_at": None,
            },
            {
                "fingerprint": rekeyed.fingerprint,
                "signing_fingerprint": rekeyed.signing_fingerprint,
                "state": "pending",
                "registered_at": (T0 + timedelta(days=1)).isoformat(),
                "approved_at": None,
                "approved_by": None,
                "retired_at": None,
            },
        ],
        "latest_rotation": {
            "key_id": "epoch-2",
            "recipient": True,
            "first_fetched_at": (T0 + timedelta(days=3)).isoformat(),
            "last_fetched_at": (T0 + timedelta(days=3)).isoformat(),
        },
    }
    register_and_approve(forum, ["m2"], T0 + timedelta(days=4))
    late = invoke_hub(url, "member", "keys", "m2")
    assert late.stdout.endswith(
        "latest rotation epoch-2: m2 was not a recipient; the next rotation seals the forum "
        "secret to it\n"
    )


def test_member_keys_of_a_custodian_names_the_signing_key_members_pin(forum: Engine) -> None:
    register_and_approve(forum, [KEEPER], T0)
    signing = keys_of(KEEPER).signing_fingerprint
    result = invoke_hub(_url(forum), "member", "keys", KEEPER)
    assert result.stdout.endswith(
        f"members pin keeper's signing key {signing} (`sigshare keys trust {signing}`)\n"
    )
    document = invoke_hub_json(_url(forum), "member", "keys", KEEPER)
    assert "latest_rotation" not in document
    assert [r["signing_fingerprint"] for r in document["registrations"]] == [signing]


# ---------------------------------------------------------------------------------- approve-keys


def test_approve_keys_approves_exactly_the_named_registration(forum: Engine) -> None:
    url = _url(forum)
    fingerprint = register(forum, "m1", T0).registration.fingerprint

    result = invoke_hub(url, "member", "approve-keys", "m1", fingerprint)

    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"approved keys {fingerprint} of member m1\n"
        "m1 receives the forum secret with the next rotation: a custodian runs "
        "`sigshare keys rotate --key-id NEW_ID`\n"
    )
    document = invoke_hub_json(url, "member", "approve-keys", "m1", fingerprint)
    approved_at = document.pop("approved_at")
    assert document == {
        "name": "m1",
        "role": "member",
        "fingerprint": fingerprint,
        "signing_fingerprint": keys_of("m1").signing_fingerprint,
        "state": "approved",
        "registered_at": T0.isoformat(),
        "approved_by": "cli:alice",
        "retired_at": None,
        "changed": False,
        "retired": None,
        "latest_rotation": None,
        "in_latest_rotation": False,
    }
    again = invoke_hub(url, "member", "approve-keys", "m1", fingerprint)
    assert again.stdout == (
        f"keys {fingerprint} of member m1 were approved already "
        f"(at {format_time(datetime.fromisoformat(approved_at))}): nothing changed\n"
    )
    actions = invoke_hub_json(url, "audit", "show", "--action", "keys.approve")["entries"]
    assert [(e["actor"], e["target"], e["details"]) for e in actions] == [
        ("cli:alice", "m1", {"role": "member", "fingerprint": fingerprint, "retired": None})
    ]


def test_approve_keys_of_new_keys_retires_the_old_and_of_a_custodian_names_its_signing_key(
    forum: Engine,
) -> None:
    url = _url(forum)
    register_and_approve(forum, [KEEPER], T0)
    new = keys_of(KEEPER, 1)
    register(forum, KEEPER, T0 + timedelta(days=1), keys=new)

    result = invoke_hub(url, "member", "approve-keys", KEEPER, new.fingerprint)

    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"approved keys {new.fingerprint} of custodian keeper; the keys "
        f"{keys_of(KEEPER).fingerprint} are retired\n"
        f"members verify keeper's envelopes with signing key {new.signing_fingerprint}: each "
        f"pins it with `sigshare keys trust {new.signing_fingerprint}`\n"
    )


def test_approve_keys_refusals_are_input_errors(forum: Engine) -> None:
    url = _url(forum)
    old = register(forum, "m1", T0).registration.fingerprint
    register(forum, "m1", T0 + timedelta(minutes=1), keys=keys_of("m1", 1))  # replaces it
    other = keys_of("m2").fingerprint

    unknown = invoke_hub(url, "member", "approve-keys", "m1", other)
    assert (unknown.exit_code, unknown.stdout, unknown.stderr) == (
        ExitCode.INPUT,
        "",
        f"error: m1 has no key registration {other}: `sigshare-hub member keys m1` lists its "
        "registrations\n",
    )
    malformed = invoke_hub_json(url, "member", "approve-keys", "m1", "[x]", code=ExitCode.INPUT)
    assert malformed["error"] == (
        "fingerprint '[x]' is malformed: it is SHA256: followed by 43 base64 characters, as "
        "`sigshare-hub member keys m1` shows it"
    )
    retired = invoke_hub(url, "member", "approve-keys", "m1", old)
    assert retired.exit_code == ExitCode.INPUT
    assert retired.stderr.startswith(f"error: keys {old} of m1 were retired at ")
    assert invoke_hub_json(url, "audit", "show", "--action", "keys.approve")["entries"] == []


# ---------------------------------------------------------------------------------- revoke


def test_revoke_with_rotate_records_that_a_rotation_is_due_and_who_runs_it(forum: Engine) -> None:
    url = _url(forum)
    plain = invoke_hub(url, "member", "revoke", "m2")
    assert "rotation due" not in plain.stdout

    result = invoke_hub(url, "member", "revoke", "m1", "--rotate")

    assert result.exit_code == 0, result.output
    first, second = result.stdout.splitlines()
    assert first.startswith("revoked member m1 at ")
    assert second == f"rotation due (member m1 revoked): {ROTATE_HINT}"
    document = invoke_hub_json(url, "member", "revoke", "m1", "--rotate")
    assert (document["name"], document["rotation_due"]) == ("m1", "member m1 revoked")
    assert invoke_hub_json(url, "member", "revoke", "m2")["rotation_due"] is None
    due = invoke_hub_json(url, "keys", "status")["rotation_due"]
    assert [(d["reason"], d["requested_by"]) for d in due] == [("member m1 revoked", "cli:alice")]
    actions = invoke_hub_json(url, "audit", "show", "--action", "keys.rotation_due")["entries"]
    assert [(e["actor"], e["target"]) for e in actions] == [("cli:alice", "member m1 revoked")]


# ---------------------------------------------------------------------------------- keys status


def test_keys_status_before_any_rotation(forum: Engine) -> None:
    result = invoke_hub(_url(forum), "keys", "status")
    assert (result.exit_code, result.stdout) == (
        0,
        "no rotation due\nno rotation yet: a custodian distributes a new forum secret with "
        "`sigshare keys rotate --key-id ID`\n",
    )
    assert invoke_hub_json(_url(forum), "keys", "status") == {
        "rotation_due": [],
        "rotations": [],
        "uncovered": [],
    }


def test_keys_status_shows_due_rotations_each_rotation_and_members_it_missed(
    forum: Engine,
) -> None:
    url = _url(forum)
    register_and_approve(forum, [KEEPER, "m1"], T0)
    _rotate(forum)
    _fetch(forum, "m1", T0 + timedelta(hours=2))
    register_and_approve(forum, ["m2"], T0 + timedelta(days=1))
    with session_scope(forum) as session:
        keyring.request_rotation(
            session, actor=SETUP_ACTOR, reason="yearly rotation", now=T0 + timedelta(days=1)
        )

    result = invoke_hub(url, "keys", "status")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[:3] == [
        f"rotation due: yearly rotation (recorded {format_time(T0 + timedelta(days=1))} by "
        f"{SETUP_ACTOR})",
        ROTATE_HINT,
        "rotations, newest first",
    ]
    assert table_cells(result.stdout) == [
        ["epoch-2", KEEPER, format_time(T0), format_time(T0 + timedelta(days=1)), "1", "1"]
    ]
    assert lines[-1] == (
        "not reached by the latest rotation (epoch-2): m2; the next rotation seals the forum "
        "secret to them"
    )
    document = invoke_hub_json(url, "keys", "status")
    total = document["rotations"][0].pop("total_bytes")
    assert total > 0
    assert document == {
        "rotation_due": [
            {
                "reason": "yearly rotation",
                "requested_by": SETUP_ACTOR,
                "requested_at": (T0 + timedelta(days=1)).isoformat(),
            }
        ],
        "rotations": [
            {
                "key_id": "epoch-2",
                "custodian": KEEPER,
                "created_at": T0.isoformat(),
                "activate_at": (T0 + timedelta(days=1)).isoformat(),
                "recipients": 1,
                "fetched": 1,
            }
        ],
        "uncovered": ["m2"],
    }


def test_keys_status_of_one_rotation_shows_each_recipients_pickup(forum: Engine) -> None:
    url = _url(forum)
    keys = register_and_approve(forum, [KEEPER, "m1", "m2"], T0)
    _rotate(forum)
    first, last = T0 + timedelta(hours=1), T0 + timedelta(hours=6)
    _fetch(forum, "m2", first)
    _fetch(forum, "m2", last)

    result = invoke_hub(url, "keys", "status", "--key-id", "epoch-2")

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(
        f"envelopes of epoch-2 (keeper, {format_time(T0)}): 1 of 2 fetched\n"
    )
    assert table_cells(result.stdout) == [
        ["m1", keys["m1"].fingerprint, "not yet", "not yet"],
        ["m2", keys["m2"].fingerprint, format_time(first), format_time(last)],
    ]
    document = invoke_hub_json(url, "keys", "status", "--key-id", "epoch-2")
    sizes = {e["recipient"]: e.pop("byte_size") for e in document["envelopes"]}
    assert sum(sizes.values()) == document.pop("total_bytes")
    assert document == {
        "key_id": "epoch-2",
        "custodian": KEEPER,
        "created_at": T0.isoformat(),
        "activate_at": (T0 + timedelta(days=1)).isoformat(),
        "recipients": 2,
        "fetched": 1,
        "envelopes": [
            {
                "recipient": "m1",
                "fingerprint": keys["m1"].fingerprint,
                "first_fetched_at": None,
                "last_fetched_at": None,
            },
            {
                "recipient": "m2",
                "fingerprint": keys["m2"].fingerprint,
                "first_fetched_at": first.isoformat(),
                "last_fetched_at": last.isoformat(),
            },
        ],
    }
    unknown = invoke_hub(url, "keys", "status", "--key-id", "nope")
    assert (unknown.exit_code, unknown.stdout, unknown.stderr) == (
        ExitCode.INPUT,
        "",
        "error: rotation to key id 'nope' not found: `sigshare-hub keys status` lists them\n",
    )


def test_keys_status_runs_on_every_backend(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        add_principals(engine, ROLES, T0)
        register_and_approve(engine, [KEEPER, "m1"], T0)
        _rotate(engine)
    finally:
        engine.dispose()
    document = invoke_hub_json(database_url, "keys", "status", "--key-id", "epoch-2")
    assert (document["recipients"], [e["recipient"] for e in document["envelopes"]]) == (
        1,
        ["m1"],
    )


def test_the_keys_group_is_listed_in_help() -> None:
    result = CliRunner().invoke(cli, ["keys", "--help"])
    assert result.exit_code == 0
    assert [
        line.split()[0] for line in result.stdout.split("Commands:")[1].splitlines() if line.strip()
    ] == ["status"]
