"""``sigshare keys register|show|trust|rotate`` and ``init --trust-custodian`` over a real hub:
exact output, files and exit codes."""

from __future__ import annotations

import base64
import json
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from sigshare.client.cli import cli
from sigshare.client.exit_codes import ExitCode
from sigshare.client.sealed_keys import load_pinned_custodian
from sigshare.hub.services import keyring
from sigshare.hub.storage import session_scope
from sigshare.hub.storage.principals import PrincipalRepository
from sigshare.keyring import MemberKeys, read_header, registration_proof
from sigshare.sketch.keys import load_secret_file
from tests.support.cli import table_cells
from tests.support.e2e import write_config
from tests.support.sealed_forum import (
    CLI_ENV,
    CUSTODIAN,
    Person,
    SealedForum,
)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def approve_lines(name: str, fingerprint: str) -> list[str]:
    return [
        "check this fingerprint with the forum's admin out of band; the admin then runs:",
        f"  sigshare-hub member approve-keys {name} {fingerprint}",
    ]


def add_custodian(forum: SealedForum, name: str) -> MemberKeys:
    """Another custodian, its keys registered and approved at the hub directly."""
    forum.admin("member", "add", name, "--role", "custodian")
    keys = MemberKeys.generate()
    now = datetime.now(UTC)
    with session_scope(forum.engine) as session:
        principal = PrincipalRepository(session).get_by_name(name)
        assert principal is not None
        keyring.register_keys(
            session,
            principal=principal,
            sealing_public=keys.sealing_public,
            signing_public=keys.signing_public,
            proof=registration_proof(name, keys),
            now=now,
        )
        keyring.approve_keys(
            session, actor="test", name=name, fingerprint=keys.fingerprint, now=now
        )
    return keys


# ---------------------------------------------------------------------------------- register


def test_register_creates_private_keys_and_names_the_approval_command(
    forum: SealedForum,
) -> None:
    alpha = forum.people["alpha"]
    first = alpha.ok("keys", "register")
    fingerprint = alpha.keys().fingerprint
    keys_file = alpha.keys_dir / "member.keys"
    assert first.stdout.splitlines() == [
        f"created member keys in {keys_file} (mode 0600)",
        f"registered the keys of alpha: {fingerprint} (awaiting approval)",
        *approve_lines("alpha", fingerprint),
    ]
    assert first.stderr == ""
    assert (mode_of(keys_file), mode_of(alpha.keys_dir), mode_of(alpha.state_dir)) == (
        0o600,
        0o700,
        0o700,
    )

    again = alpha.ok("keys", "register")
    assert again.stdout.splitlines() == [
        f"the keys of alpha are registered already and awaiting approval: {fingerprint}",
        *approve_lines("alpha", fingerprint),
    ]
    forum.approve("alpha")
    approved = alpha.ok("keys", "register")
    assert approved.stdout == (
        f"the keys of alpha are registered already and approved: {fingerprint}\n"
    )
    assert alpha.keys().fingerprint == fingerprint  # never replaced without --new-keys


def test_register_json_says_what_the_hub_holds(forum: SealedForum) -> None:
    alpha = forum.people["alpha"]
    document = alpha.json("keys", "register")
    keys = alpha.keys()
    registered_at = datetime.fromisoformat(document.pop("registered_at"))
    assert abs(datetime.now(UTC) - registered_at) < timedelta(minutes=1)
    assert document == {
        "name": "alpha",
        "fingerprint": keys.fingerprint,
        "signing_fingerprint": keys.signing_fingerprint,
        "keys_file": str(alpha.keys_dir / "member.keys"),
        "created": True,
        "unchanged": False,
        "status": "pending",
        "approved_at": None,
        "approve_command": f"sigshare-hub member approve-keys alpha {keys.fingerprint}",
    }
    forum.approve("alpha")
    again = alpha.json("keys", "register")
    assert (again["created"], again["unchanged"], again["status"], again["approve_command"]) == (
        False,
        True,
        "approved",
        None,
    )
    assert again["approved_at"] is not None


def test_new_keys_wait_for_approval_while_the_approved_ones_stay_in_use(
    forum: SealedForum,
) -> None:
    alpha = forum.people["alpha"]
    alpha.ok("keys", "register")
    forum.approve("alpha")
    old = alpha.keys().fingerprint
    replaced = alpha.ok("keys", "register", "--new-keys")
    new = alpha.keys().fingerprint
    assert new != old
    assert replaced.stdout.splitlines() == [
        f"created member keys in {alpha.keys_dir / 'member.keys'} (mode 0600)",
        f"registered the keys of alpha: {new} (awaiting approval)",
        *approve_lines("alpha", new),
    ]
    shown = alpha.json("keys", "show")
    assert shown["registration"] == "pending"
    assert shown["approved"]["fingerprint"] == old
    assert shown["pending"]["fingerprint"] == new
    lines = alpha.ok("keys", "show").stdout.splitlines()
    assert lines[1] == (
        f"registration  awaiting approval for alpha: sigshare-hub member approve-keys alpha "
        f"{new}; the approved keys {old} stay in use until then"
    )


# ---------------------------------------------------------------------------------- trust


def test_trust_pins_only_a_listed_custodian_by_its_fingerprint(forum: SealedForum) -> None:
    alpha = forum.people["alpha"]
    keeper = forum.people[CUSTODIAN]
    unknown = "SHA256:" + "A" * 43
    nobody = alpha.run("keys", "trust", unknown)
    assert nobody.exit_code == ExitCode.CONFIG
    assert nobody.stderr == (
        f"error: no custodian on the hub has the signing key {unknown} (the hub lists no "
        "custodian with approved keys); check the fingerprint with the custodian out of band\n"
    )
    forum.set_up_custodian()
    fingerprint = keeper.keys().signing_fingerprint
    wrong = alpha.run("keys", "trust", unknown)
    assert wrong.exit_code == ExitCode.CONFIG
    assert wrong.stderr == (
        f"error: no custodian on the hub has the signing key {unknown} (the hub lists "
        f"{CUSTODIAN} ({fingerprint})); check the fingerprint with the custodian out of band\n"
    )
    assert not (alpha.keys_dir / "custodian.toml").exists()

    pinned = alpha.ok("keys", "trust", fingerprint)
    assert pinned.stdout == (
        f"pinned custodian {CUSTODIAN} ({fingerprint}): sealed forum secrets are installed "
        "only if signed with its key\n"
    )
    pin_file = alpha.keys_dir / "custodian.toml"
    assert (mode_of(pin_file), mode_of(alpha.state_dir)) == (0o600, 0o700)
    pin = load_pinned_custodian(alpha.keys_dir)
    assert pin is not None
    assert (pin.name, pin.signing_public, pin.fingerprint) == (
        CUSTODIAN,
        keeper.keys().signing_public,
        fingerprint,
    )
    assert alpha.ok("keys", "trust", fingerprint).stdout == (
        f"custodian {CUSTODIAN} ({fingerprint}) is pinned already\n"
    )


def test_trust_replaces_another_custodian_only_when_told(forum: SealedForum) -> None:
    alpha = forum.people["alpha"]
    forum.set_up_custodian()
    keeper = forum.people[CUSTODIAN].keys().signing_fingerprint
    alpha.ok("keys", "trust", keeper)
    warden = add_custodian(forum, "warden").signing_fingerprint
    refused = alpha.run("keys", "trust", warden)
    assert refused.exit_code == ExitCode.CONFIG
    assert refused.stderr == (
        f"error: custodian {CUSTODIAN} ({keeper}) is pinned already; replacing it means sealed "
        "forum secrets are accepted from the new key instead: check the new fingerprint out of "
        "band, then use --replace\n"
    )
    document = alpha.json("keys", "trust", warden, "--replace")
    assert document == {
        "name": "warden",
        "fingerprint": warden,
        "file": str(alpha.keys_dir / "custodian.toml"),
        "changed": True,
        "replaced": {
            "name": CUSTODIAN,
            "fingerprint": keeper,
            "pinned_at": document["replaced"]["pinned_at"],
        },
    }
    replaced = alpha.ok("keys", "trust", keeper, "--replace")
    assert replaced.stdout == (
        f"pinned custodian {CUSTODIAN} ({keeper}) instead of warden ({warden}): sealed forum "
        "secrets are installed only if signed with its key\n"
    )


def test_a_pin_file_others_can_change_or_that_was_altered_is_refused(
    forum: SealedForum,
) -> None:
    forum.set_up_custodian()
    alpha = forum.set_up_member("alpha")
    pin_file = alpha.keys_dir / "custodian.toml"
    pin_file.chmod(0o664)
    loose = alpha.run("keys", "show")
    assert loose.exit_code == ExitCode.CONFIG
    assert loose.stderr == (
        f"error: {pin_file}: permissions -rw-rw-r-- let others change which custodian this "
        f"member trusts; run: chmod 600 {pin_file}\n"
    )
    pin_file.chmod(0o600)
    text = pin_file.read_text()
    other = MemberKeys.generate().signing_public
    altered = [
        f'signing_public = "{base64.b64encode(other).decode()}"'
        if line.startswith("signing_public")
        else line
        for line in text.splitlines()
    ]
    pin_file.write_text("\n".join(altered) + "\n")
    tampered = alpha.run("sync")
    assert tampered.exit_code == ExitCode.CONFIG
    assert tampered.stderr == (
        f"error: {pin_file}: the pinned key does not have the fingerprint the file names: it "
        "was altered; pin the custodian again: sigshare keys trust FINGERPRINT --replace\n"
    )


# ---------------------------------------------------------------------------------- show


def test_show_lists_keys_registration_custodian_and_secrets(forum: SealedForum) -> None:
    forum.set_up_custodian()
    alpha = forum.set_up_member("alpha")
    forum.rotate("k2")
    alpha.ok("keys", "fetch")
    keys = alpha.keys()
    keeper = forum.people[CUSTODIAN].keys()
    header = read_header(forum.envelope("k2", "alpha"))
    document = alpha.json("keys", "show")
    pin = load_pinned_custodian(alpha.keys_dir)
    assert pin is not None
    assert document["approved"]["fingerprint"] == keys.fingerprint
    installed = document["secrets"][1].pop("installed_at")
    assert datetime.fromisoformat(installed) >= header.created_at
    del document["approved"]
    assert document == {
        "name": "alpha",
        "hub_error": None,
        "member_keys": {
            "file": str(alpha.keys_dir / "member.keys"),
            "fingerprint": keys.fingerprint,
            "signing_fingerprint": keys.signing_fingerprint,
        },
        "registration": "approved",
        "pending": None,
        "envelopes_waiting": 0,
        "custodian": {
            "name": CUSTODIAN,
            "fingerprint": keeper.signing_fingerprint,
            "pinned_at": pin.pinned_at.isoformat(),
        },
        "secrets": [
            {
                "key_id": "k1",
                "file": str(alpha.secret_file),
                "source": "configured",
                "custodian": None,
                "created_at": None,
                "activate_at": None,
                "installed_at": None,
            },
            {
                "key_id": "k2",
                "file": str(alpha.installed("k2")),
                "source": "envelope",
                "custodian": CUSTODIAN,
                "created_at": header.created_at.isoformat(),
                "activate_at": None,
            },
        ],
        "refused": [],
    }
    human = alpha.ok("keys", "show")
    assert human.stdout.splitlines()[:3] == [
        f"member keys   {keys.fingerprint} (signing key {keys.signing_fingerprint})",
        "registration  approved for alpha",
        f"custodian     {CUSTODIAN} ({keeper.signing_fingerprint}), pinned "
        f"{pin.pinned_at.isoformat()}",
    ]
    assert table_cells(human.stdout) == [
        ["k1", "configured", "-", "-", "-", str(alpha.secret_file)],
        [
            "k2",
            "envelope",
            header.created_at.isoformat()[:19],
            "at once",
            CUSTODIAN,
            str(alpha.installed("k2")),
        ],
    ]


def test_show_answers_from_local_files_when_the_hub_is_down(
    forum: SealedForum, closed_port: int
) -> None:
    alpha = forum.people["alpha"]
    alpha.ok("keys", "register")
    offline = write_config(
        alpha.directory / "offline.toml",
        hub=f"127.0.0.1:{closed_port}",
        credential_file=alpha.directory / "credential",
        secret_file=alpha.secret_file,
        state_dir=alpha.state_dir,
        retries=0,
    )
    result = CliRunner().invoke(
        cli, ["keys", "show", "--config", str(offline), "--json"], env=CLI_ENV
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["hub_error"].startswith(
        f"hub at 127.0.0.1:{closed_port} unavailable for GetKeyStatus: "
    )
    assert (document["name"], document["registration"], document["approved"]) == (None, None, None)
    assert document["member_keys"]["fingerprint"] == alpha.keys().fingerprint
    human = CliRunner().invoke(cli, ["keys", "show", "--config", str(offline)], env=CLI_ENV)
    assert human.exit_code == 0
    assert human.stderr.startswith(
        "warning: the hub could not be reached, showing local keys only: hub at "
    )
    assert human.stdout.splitlines()[:2] == [
        f"member keys  {alpha.keys().fingerprint} (signing key {alpha.keys().signing_fingerprint})",
        "custodian    none pinned (run `sigshare keys trust FINGERPRINT`)",
    ]


# ---------------------------------------------------------------------------------- rotate


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (
            "2020-01-01T00:00:00Z",
            "2020-01-01T00:00:00+00:00 is in the past; give a future "
            "time, or leave the option out to announce none",
        ),
        ("2099-01-01T00:00:00", "no time zone; give the time in UTC, e.g. 2099-01-01T00:00:00Z"),
        ("next tuesday", "not an ISO 8601 time; give one in UTC, e.g. 2027-01-01T00:00:00Z"),
    ],
)
def test_rotate_refuses_an_unusable_activation_time(
    forum: SealedForum, value: str, problem: str
) -> None:
    keeper = forum.people[CUSTODIAN]
    result = keeper.run("keys", "rotate", "--key-id", "k2", "--activate-at", value)
    assert result.exit_code == ExitCode.USAGE
    assert result.stderr == f"error: --activate-at {value}: {problem}\n"
    assert not keeper.state_dir.exists()


def test_rotate_needs_approved_custodian_keys_and_a_recipient(forum: SealedForum) -> None:
    keeper = forum.people[CUSTODIAN]
    no_keys = keeper.run("keys", "rotate", "--key-id", "k2")
    assert no_keys.exit_code == ExitCode.CONFIG
    assert no_keys.stderr == (
        f"error: {keeper.keys_dir / 'member.keys'}: no member keys here; generate this "
        "member's keys first, or point to the directory that holds them\n"
    )
    keeper.ok("keys", "register")
    fingerprint = keeper.keys().fingerprint
    unapproved = keeper.run("keys", "rotate", "--key-id", "k2")
    assert unapproved.exit_code == ExitCode.CONFIG
    assert unapproved.stderr == (
        f"error: your keys {fingerprint} are not the approved keys of {CUSTODIAN} (approved: "
        "none); members accept only envelopes signed with approved custodian keys: run "
        "`sigshare keys register` and have the admin run sigshare-hub member approve-keys "
        f"{CUSTODIAN} {fingerprint}\n"
    )
    forum.approve(CUSTODIAN)
    nobody = keeper.run("keys", "rotate", "--key-id", "k2")
    assert nobody.exit_code == ExitCode.REJECTED
    assert nobody.stderr == (
        "error: no member has approved keys: a rotation would reach nobody; members run "
        "`sigshare keys register` and the forum's admin approves their keys first\n"
    )
    assert sorted(os.listdir(keeper.directory)) == ["config.toml", "credential", "state"]


def test_rotate_seals_to_every_approved_member_and_says_what_comes_next(
    forum: SealedForum,
) -> None:
    keeper = forum.set_up_custodian()
    alpha = forum.set_up_member("alpha")
    forum.admin("member", "add", "gamma")
    forum.admin("member", "revoke", "gamma", "--rotate")
    result = keeper.ok("keys", "rotate", "--key-id", "k2")
    size = len(forum.envelope("k2", "alpha"))
    assert result.stdout.splitlines() == [
        "rotation was due: member gamma revoked",
        f"rotated the forum secret to key epoch k2 (no switch time announced): sealed to 1 "
        f"member (alpha), {size:,} bytes",
        f"kept the new forum secret in {keeper.installed('k2')} (mode 0600)",
        "next: members install it and send their sketches ahead under it on their next "
        "`sigshare sync`; once `sigshare-hub keys status` shows they have, the forum's operator "
        "runs `sigshare-hub params epoch k2`",
    ]
    assert result.stderr == (
        "warning: beta has no approved keys: it receives nothing\n"
        f"warning: alpha ({alpha.keys().fingerprint}) is sealed to for the first time: check "
        "that fingerprint with it out of band\n"
    )
    kept = keeper.installed("k2")
    assert mode_of(kept) == 0o600
    assert sorted(os.listdir(keeper.directory)) == [
        "config.toml",
        "credential",
        "forum.k2.secret",
        "state",
    ]
    alpha.ok("keys", "fetch")
    assert load_secret_file(alpha.installed("k2")) == load_secret_file(kept)


def test_rotate_json_with_an_activation_time(forum: SealedForum) -> None:
    keeper = forum.set_up_custodian()
    forum.set_up_member("alpha")
    forum.set_up_member("beta")
    activation = (datetime.now(UTC) + timedelta(days=7)).replace(microsecond=0)
    document = keeper.json(
        "keys", "rotate", "--key-id", "k2", "--activate-at", activation.isoformat()
    )
    header = read_header(forum.envelope("k2", "beta"))
    assert header.activate_at == activation
    assert document == {
        "key_id": "k2",
        "custodian": CUSTODIAN,
        "recipients": ["alpha", "beta"],
        "unregistered": [],
        "rotation_due": [],
        "first_sealed": {
            "alpha": forum.people["alpha"].keys().fingerprint,
            "beta": forum.people["beta"].keys().fingerprint,
        },
        "accepted_new_keys": {},
        "bytes": len(forum.envelope("k2", "alpha")) + len(forum.envelope("k2", "beta")),
        "created_at": header.created_at.isoformat(),
        "activate_at": activation.isoformat(),
        "file": str(keeper.installed("k2")),
        "operator_command": "sigshare-hub params epoch k2",
    }


def test_a_members_changed_keys_are_sealed_to_only_once_the_custodian_accepts_them(
    forum: SealedForum,
) -> None:
    """The custodian pins each member's keys on first sight: keys approved in a member's name
    later (by an admin who may be the hub's operator) get no envelope until it accepts them."""
    keeper = forum.set_up_custodian()
    alpha = forum.set_up_member("alpha")
    keeper.ok("keys", "rotate", "--key-id", "k2")
    alpha.ok("keys", "fetch")
    sealed_before = alpha.keys().fingerprint
    alpha.ok("keys", "register", "--new-keys")
    forum.approve("alpha")
    sealed_now = alpha.keys().fingerprint
    refused = keeper.run("keys", "rotate", "--key-id", "k3")
    assert refused.exit_code == ExitCode.CONFIG
    assert refused.stderr == (
        f"error: members' keys changed since your last rotation (alpha: sealed to "
        f"{sealed_before} before, now {sealed_now}): check each new fingerprint with its "
        "member out of band, then run the rotation again with --accept-new-keys alpha\n"
    )
    assert "forum.k3.secret" not in os.listdir(keeper.directory)
    document = keeper.json("keys", "rotate", "--key-id", "k3", "--accept-new-keys", "alpha")
    assert (document["first_sealed"], document["accepted_new_keys"]) == (
        {},
        {"alpha": sealed_now},
    )
    alpha.ok("keys", "fetch")
    assert load_secret_file(alpha.installed("k3")) == load_secret_file(keeper.installed("k3"))
    keeper.ok("keys", "rotate", "--key-id", "k4")  # pinned anew: no acceptance needed again


def test_a_rotation_the_hub_refuses_changes_nothing_locally(forum: SealedForum) -> None:
    keeper = forum.set_up_custodian()
    forum.set_up_member("alpha")
    refused = keeper.run("keys", "rotate", "--key-id", "k1")  # the epoch the forum uses now
    assert refused.exit_code == ExitCode.REJECTED
    assert refused.stderr == (
        "error: key id 'k1' is the one the forum publishes now (for email): a rotation needs a "
        "new key id\n"
    )
    assert sorted(os.listdir(keeper.directory)) == ["config.toml", "credential", "state"]
    keeper.ok("keys", "rotate", "--key-id", "k2")
    again = keeper.run("keys", "rotate", "--key-id", "k2")
    assert again.exit_code == ExitCode.CONFIG
    assert again.stderr == (
        f"error: {keeper.installed('k2')}: a forum secret for key epoch k2 is already "
        "installed; choose a new key id\n"
    )


def test_a_member_credential_cannot_rotate(forum: SealedForum) -> None:
    forum.set_up_custodian()
    alpha: Person = forum.set_up_member("alpha")
    result = alpha.run("keys", "rotate", "--key-id", "k2")
    assert result.exit_code == ExitCode.AUTH
    assert result.stderr.startswith("error: not authorised by the hub: ")
    assert not alpha.installed("k2").exists()
    assert not any(name.endswith(".pending") for name in os.listdir(alpha.directory))


# ---------------------------------------------------------------------------------- init


def init_args(member: Person, state_dir: Path, config: Path) -> list[str]:
    return [
        "init",
        "--hub",
        member.forum.hub.target,
        "--insecure",
        "--credential-file",
        str(member.directory / "credential"),
        "--secret-file",
        str(member.secret_file),
        "--state-dir",
        str(state_dir),
        "--config",
        str(config),
    ]


def test_init_pins_the_custodian_it_is_told_to_trust(forum: SealedForum) -> None:
    forum.set_up_custodian()
    alpha = forum.people["alpha"]
    fingerprint = forum.people[CUSTODIAN].keys().signing_fingerprint
    state_dir, config = alpha.directory / "state2", alpha.directory / "init.toml"
    args = init_args(alpha, state_dir, config)

    conflict = CliRunner().invoke(
        cli, [*args, "--no-check", "--trust-custodian", fingerprint], env=CLI_ENV
    )
    assert conflict.exit_code == ExitCode.USAGE
    assert conflict.stderr == (
        "error: --trust-custodian looks the custodian up on the hub: it cannot go with --no-check\n"
    )
    unknown = CliRunner().invoke(
        cli, [*args, "--trust-custodian", "SHA256:" + "B" * 43], env=CLI_ENV
    )
    assert unknown.exit_code == ExitCode.CONFIG
    assert unknown.stderr.startswith("error: no custodian on the hub has the signing key ")
    assert not config.exists()

    result = CliRunner().invoke(
        cli, [*args, "--trust-custodian", fingerprint, "--json"], env=CLI_ENV
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["custodian"] == {
        "name": CUSTODIAN,
        "fingerprint": fingerprint,
        "file": str(state_dir / "keys" / "custodian.toml"),
    }
    pin = load_pinned_custodian(state_dir / "keys")
    assert pin is not None
    assert pin.fingerprint == fingerprint
    assert mode_of(state_dir) == 0o700
