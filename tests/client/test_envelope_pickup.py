"""Sealed forum secrets picked up by the member's nightly job, over a real hub.

The custodian rotates with ``sigshare keys rotate``; each member's ``sigshare sync`` (or
``keys fetch``) fetches the envelopes addressed to it and installs every new secret next to the
configured one, then sketches under whichever secret matches the key epoch the hub publishes.
The hub is not trusted with the envelopes: a test plays a hostile hub by writing its envelope
table directly — a tampered envelope, one signed by another key, one addressed to another
member, a replayed old rotation, a second different secret for an installed epoch — and each is
refused with its own message, installs nothing, ends the run partial (exit 8) once, and the
next clean rotation still installs. The local state's record of all this (schema 3) has tests of
its own at the end.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sigshare.client.exit_codes import ExitCode
from sigshare.client.state import (
    SCHEMA_VERSION,
    STATE_FILE,
    InstalledEpoch,
    LocalState,
    RefusedEnvelope,
)
from sigshare.keyring import (
    EnvelopeAddressError,
    EnvelopeSignatureError,
    KeyringError,
    MemberKeys,
    open_envelope,
    read_header,
    seal_envelope,
)
from sigshare.sketch.keys import ForumSecret, load_secret_file
from tests.support.e2e import write_indicator_csv
from tests.support.sealed_forum import (
    CUSTODIAN,
    FIRST_SECRET,
    KEY_ID,
    Person,
    SealedForum,
)

PARTIAL = int(ExitCode.PARTIAL)
NOT_SET_UP = (
    "sealed key distribution is not set up: no member keys (sigshare keys register), no pinned "
    "custodian (sigshare keys trust FINGERPRINT)"
)


@pytest.fixture
def distributing(forum: SealedForum) -> SealedForum:
    """The custodian and both members set up for sealed distribution."""
    forum.set_up_custodian()
    forum.set_up_member("alpha")
    forum.set_up_member("beta")
    return forum


def emails(member: Person) -> Path:
    return write_indicator_csv(
        member.directory / "emails.csv",
        [("email", f"{member.name}.{i}@example.org", "fraud") for i in range(3)],
    )


def sealed_at(forum: SealedForum, key_id: str, recipient: str = "alpha") -> datetime:
    """When the custodian sealed ``recipient``'s envelope of ``key_id`` (its signed header)."""
    return read_header(forum.envelope(key_id, recipient)).created_at


def installed_entry(forum: SealedForum, member: Person, key_id: str) -> dict[str, Any]:
    header = read_header(forum.envelope(key_id, member.name))
    return {
        "key_id": key_id,
        "custodian": CUSTODIAN,
        "created_at": header.created_at.isoformat(),
        "activate_at": None if header.activate_at is None else header.activate_at.isoformat(),
        "path": str(member.installed(key_id)),
    }


def opening_error(forum: SealedForum, member: Person, data: bytes) -> KeyringError:
    """What opening ``data`` as ``member``, trusting the custodian's key, raises."""
    with pytest.raises(KeyringError) as caught:
        open_envelope(
            data,
            recipient=member.name,
            keys=member.keys(),
            custodian_signing_public=forum.people[CUSTODIAN].keys().signing_public,
        )
    return caught.value


# ---------------------------------------------------------------------------------- set-up


def test_without_keys_or_a_pinned_custodian_sync_works_as_before(forum: SealedForum) -> None:
    alpha = forum.people["alpha"]
    human = alpha.ok("sync")
    (line,) = human.stdout.splitlines()
    assert line.startswith("sync: pushed nothing; 0 shared indicators, 0 campaigns (")
    assert human.stderr == ""
    document = alpha.json("sync")
    assert document["keys"] == {
        "set_up": False,
        "note": NOT_SET_UP,
        "installed": [],
        "refused": [],
    }
    assert document["outcome"] == "ok"
    forum.set_up_custodian()
    alpha.ok("keys", "register")
    assert alpha.json("sync")["keys"]["note"] == (
        "sealed key distribution is not set up: no pinned custodian "
        "(sigshare keys trust FINGERPRINT)"
    )


def test_keys_fetch_needs_keys_and_a_pinned_custodian(forum: SealedForum) -> None:
    alpha = forum.people["alpha"]
    refused = alpha.run("keys", "fetch")
    assert refused.exit_code == ExitCode.CONFIG
    assert refused.stderr == f"error: {NOT_SET_UP}; nothing was fetched\n"
    assert refused.stdout == ""


# ---------------------------------------------------------------------------------- pickup


def test_each_member_installs_a_rotation_once_on_its_next_sync(distributing: SealedForum) -> None:
    forum = distributing
    alpha, beta = forum.people["alpha"], forum.people["beta"]
    forum.rotate("k2")
    kept = load_secret_file(forum.people[CUSTODIAN].installed("k2"))

    document = alpha.json("sync")
    assert document["keys"] == {
        "set_up": True,
        "note": None,
        "installed": [installed_entry(forum, alpha, "k2")],
        "refused": [],
    }
    assert document["outcome"] == "ok"
    path = alpha.installed("k2")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_secret_file(path) == kept

    human = beta.ok("sync")
    installed, summary = human.stdout.splitlines()
    assert installed == (
        f"installed forum secret k2 (from custodian {CUSTODIAN}, no switch time announced) as "
        f"{beta.installed('k2')}"
    )
    assert summary.startswith("sync: pushed nothing; 0 shared indicators, 0 campaigns (")
    assert human.stderr == ""
    assert load_secret_file(beta.installed("k2")) == kept

    again = alpha.json("sync")
    assert (again["keys"]["installed"], again["keys"]["refused"]) == ([], [])
    with LocalState.open(alpha.state_dir) as state:
        assert [(e.key_id, e.custodian, e.path) for e in state.installed_epochs()] == [
            ("k2", CUSTODIAN, path)
        ]


def test_keys_fetch_installs_without_a_sync(distributing: SealedForum) -> None:
    forum = distributing
    alpha = forum.people["alpha"]
    forum.rotate("k2")
    first = alpha.ok("keys", "fetch")
    assert first.stdout.splitlines() == [
        f"installed forum secret k2 (from custodian {CUSTODIAN}, no switch time announced) as "
        f"{alpha.installed('k2')}",
        "installed 1 new forum secret",
    ]
    assert alpha.ok("keys", "fetch").stdout == "no new forum secret\n"
    assert alpha.json("keys", "fetch") == {
        "keys": {"set_up": True, "note": None, "installed": [], "refused": []},
        "outcome": "ok",
    }


def test_a_planned_epoch_is_sent_ahead_and_carried_over_by_the_switch(
    distributing: SealedForum,
) -> None:
    forum = distributing
    alpha = forum.people["alpha"]
    activation = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    forum.rotate("k2", "--activate-at", activation.isoformat())

    before = alpha.ok("sync", str(emails(alpha)))
    assert before.stdout.splitlines()[0] == (
        f"installed forum secret k2 (from custodian {CUSTODIAN}, switch planned for "
        f"{activation.isoformat()}) as {alpha.installed('k2')}"
    )
    assert "; sent ahead under key epoch k2: email" in before.stdout
    with LocalState.open(alpha.state_dir) as state:
        sketch = state.sketch("email")
        assert sketch is not None
        assert sketch.key_id == KEY_ID  # the hub still publishes k1
        ahead = state.sketch("email@k2")
        assert ahead is not None
        assert ahead.key_id == "k2"
    again = alpha.json("sync", str(emails(alpha)))
    assert [(s["name"], s["unchanged"]) for s in again["push"]["ahead"]["submissions"]] == [
        ("email@k2", True)
    ]

    assert "1 of 1" in forum.admin("params", "epoch", "k2")
    after = alpha.json("sync", str(emails(alpha)))
    assert after["keys"]["installed"] == []
    # The filter sent ahead became the active one at the switch: nothing new to send.
    assert [(s["name"], s["unchanged"]) for s in after["push"]["submissions"]] == [("email", True)]
    assert after["push"]["ahead"] == {"key_id": None, "submissions": []}
    with LocalState.open(alpha.state_dir) as state:
        sketch = state.sketch("email")
        assert sketch is not None
        assert sketch.key_id == "k2"
        assert state.sketch("email@k2") is None  # dropped once it became the current one


def test_a_rotation_without_activation_time_keeps_the_current_epoch_running(
    distributing: SealedForum,
) -> None:
    forum = distributing
    alpha = forum.people["alpha"]
    forum.rotate("k2")
    result = alpha.json("sync", str(emails(alpha)))
    assert [s["name"] for s in result["push"]["submissions"]] == ["email"]
    assert result["push"]["ahead"]["key_id"] == "k2"
    with LocalState.open(alpha.state_dir) as state:
        sketch = state.sketch("email")
        assert sketch is not None
        assert sketch.key_id == KEY_ID


def test_a_pull_after_the_switch_says_the_kind_waits_for_the_next_push(
    distributing: SealedForum,
) -> None:
    forum = distributing
    alpha = forum.people["alpha"]
    alpha.ok("sync", str(emails(alpha)))
    forum.admin("params", "epoch", "k2", "--out-of-band")
    pulled = alpha.json("pull", code=PARTIAL)
    assert pulled["skipped"] == [
        {
            "kind": "email",
            "reason": "stale",
            "message": f"the forum moved from key epoch {KEY_ID} to k2 since email was last "
            "pushed: nothing was asked about it; the next `sigshare sync` with your files "
            "resubmits it and asks again",
        }
    ]


def test_the_hub_moving_back_to_a_replaced_epoch_is_refused(distributing: SealedForum) -> None:
    forum = distributing
    alpha = forum.people["alpha"]
    forum.rotate("k2")
    alpha.ok("sync", str(emails(alpha)))
    forum.admin("params", "epoch", "k2")
    alpha.ok("sync", str(emails(alpha)))  # alpha has now seen the hub publish k2
    with LocalState.open(alpha.state_dir) as state:
        (k2,) = [e for e in state.installed_epochs() if e.key_id == "k2"]
        assert k2.published_seen_at is not None
    forum.admin("params", "epoch", KEY_ID, "--out-of-band")  # back to the epoch k2 replaced
    refused = alpha.run("sync", str(emails(alpha)))
    assert refused.exit_code == ExitCode.CONFIG
    assert refused.stderr == (
        f"error: email: the hub publishes key epoch {KEY_ID}, but it published k2 (sealed "
        f"{sealed_at(forum, 'k2').isoformat()}) to this member on "
        f"{k2.published_seen_at.isoformat()}; refusing to go back to a replaced epoch: ask the "
        "forum's operator why the hub moved back\n"
    )
    with LocalState.open(alpha.state_dir) as state:
        sketch = state.sketch("email")
        assert sketch is not None
        assert sketch.key_id == "k2"  # nothing was sent under the old epoch


# ---------------------------------------------------------------------------------- refusals


def assert_refused_once(
    forum: SealedForum,
    member: Person,
    key_id: str,
    reason: str,
    message: str,
    *,
    installed_before: tuple[str, ...] = (),
) -> None:
    """``member``'s sync refuses the envelope of ``key_id`` (a warning, exit 8), installs
    nothing beside ``installed_before`` (file names) and records it; the next sync does not
    report it again; the next clean rotation installs."""
    first = member.run("sync")
    assert first.exit_code == PARTIAL, first.output
    assert first.stderr == (
        f"warning: refused the sealed forum secret {key_id} (from custodian {CUSTODIAN}): "
        f"{message}\n"
    )
    (summary,) = first.stdout.splitlines()
    assert summary.startswith(
        "sync: pushed nothing; 0 shared indicators, 0 campaigns; refused 1 sealed forum secret ("
    )
    assert sorted(os.listdir(member.directory)) == sorted(
        ["config.toml", "credential", "forum.secret", "state", *installed_before]
    )
    with LocalState.open(member.state_dir) as state:
        assert [
            (r.key_id, r.custodian, r.reason, r.message) for r in state.refused_envelopes()
        ] == [(key_id, CUSTODIAN, reason, message)]
    quiet = member.json("sync")
    assert (quiet["keys"]["installed"], quiet["keys"]["refused"], quiet["outcome"]) == (
        [],
        [],
        "ok",
    )
    refused = member.json("keys", "show")["refused"]
    assert [(r["key_id"], r["reason"], r["message"]) for r in refused] == [
        (key_id, reason, message)
    ]

    forum.rotate("k3")
    clean = member.json("sync")
    assert clean["keys"]["installed"] == [installed_entry(forum, member, "k3")]
    assert (clean["keys"]["refused"], clean["outcome"]) == ([], "ok")
    assert load_secret_file(member.installed("k3")) == load_secret_file(
        forum.people[CUSTODIAN].installed("k3")
    )


def test_an_envelope_tampered_with_at_the_hub_is_refused(distributing: SealedForum) -> None:
    forum = distributing
    alpha = forum.people["alpha"]
    forum.rotate("k2")
    tampered = bytearray(forum.envelope("k2", "alpha"))
    tampered[len(tampered) // 2] ^= 0x01  # inside the sealed secret
    forum.replace_envelope("k2", "alpha", bytes(tampered))
    error = opening_error(forum, alpha, bytes(tampered))
    assert isinstance(error, EnvelopeSignatureError)
    document = alpha.json("sync", code=PARTIAL)
    assert document["keys"] == {
        "set_up": True,
        "note": None,
        "installed": [],
        "refused": [
            {"key_id": "k2", "custodian": CUSTODIAN, "reason": "signature", "message": str(error)}
        ],
    }
    assert document["outcome"] == "partial"
    assert not alpha.installed("k2").exists()
    forum.rotate("k3")
    clean = alpha.json("sync")
    assert [entry["key_id"] for entry in clean["keys"]["installed"]] == ["k3"]
    assert clean["outcome"] == "ok"


def test_an_envelope_signed_by_another_key_is_refused(distributing: SealedForum) -> None:
    forum = distributing
    alpha = forum.people["alpha"]
    forum.rotate("k2")
    own = alpha.keys()
    forged = seal_envelope(
        ForumSecret("k2", b"\x66" * 32),
        recipient="alpha",
        recipient_sealing_public=own.sealing_public,
        recipient_signing_public=own.signing_public,
        custodian=CUSTODIAN,
        custodian_keys=MemberKeys.generate(),
        created_at=datetime.now(UTC),
        activate_at=None,
    )
    forum.replace_envelope("k2", "alpha", forged)
    error = opening_error(forum, alpha, forged)
    assert isinstance(error, EnvelopeSignatureError)
    assert_refused_once(forum, alpha, "k2", "signature", str(error))


def test_an_envelope_addressed_to_another_member_is_refused(distributing: SealedForum) -> None:
    forum = distributing
    alpha = forum.people["alpha"]
    forum.rotate("k2")
    betas = forum.envelope("k2", "beta")
    forum.replace_envelope("k2", "alpha", betas)
    error = opening_error(forum, alpha, betas)
    assert isinstance(error, EnvelopeAddressError)
    assert_refused_once(forum, alpha, "k2", "address", str(error))


def test_a_replayed_old_rotation_is_refused(distributing: SealedForum) -> None:
    forum = distributing
    alpha = forum.people["alpha"]
    forum.rotate("k2")
    assert [e["key_id"] for e in alpha.json("sync")["keys"]["installed"]] == ["k2"]
    newest = sealed_at(forum, "k2")
    old = newest - timedelta(days=1)
    own = alpha.keys()
    replayed = seal_envelope(
        ForumSecret("k0", b"\x42" * 32),
        recipient="alpha",
        recipient_sealing_public=own.sealing_public,
        recipient_signing_public=own.signing_public,
        custodian=CUSTODIAN,
        custodian_keys=forum.people[CUSTODIAN].keys(),  # genuinely the custodian's, but stale
        created_at=old,
        activate_at=None,
    )
    forum.inject_envelope("k0", "alpha", replayed, old)
    assert_refused_once(
        forum,
        alpha,
        "k0",
        "replay",
        f"the envelope for key epoch k0 was sealed at {old.isoformat()}, before the newest "
        f"installed one (k2, sealed at {newest.isoformat()}): a replayed or superseded rotation; "
        "not installed; tell the custodian",
        installed_before=("forum.k2.secret",),
    )


def test_a_second_different_secret_for_an_installed_epoch_is_refused(
    distributing: SealedForum,
) -> None:
    forum = distributing
    alpha = forum.people["alpha"]
    forum.rotate("k2")
    assert [e["key_id"] for e in alpha.json("sync")["keys"]["installed"]] == ["k2"]
    installed = alpha.installed("k2").read_bytes()
    own = alpha.keys()
    second = seal_envelope(
        ForumSecret("k2", b"\x99" * 32),
        recipient="alpha",
        recipient_sealing_public=own.sealing_public,
        recipient_signing_public=own.signing_public,
        custodian=CUSTODIAN,
        custodian_keys=forum.people[CUSTODIAN].keys(),
        created_at=datetime.now(UTC),
        activate_at=None,
    )
    forum.replace_envelope("k2", "alpha", second)
    assert_refused_once(
        forum,
        alpha,
        "k2",
        "conflict",
        f"the hub sent a second, different secret for key epoch k2 (the installed one is "
        f"{alpha.installed('k2')}); not installed; tell the custodian",
        installed_before=("forum.k2.secret",),
    )
    assert alpha.installed("k2").read_bytes() == installed


def test_a_member_that_missed_rotations_installs_them_oldest_first(
    distributing: SealedForum,
) -> None:
    forum = distributing
    alpha = forum.people["alpha"]
    forum.rotate("k2")
    own = alpha.keys()
    # The hub sends envelopes oldest first, but the member trusts their signed times only: an
    # earlier rotation served after a later one is still installed first, not refused.
    earlier = sealed_at(forum, "k2") - timedelta(hours=1)
    forum.inject_envelope(
        "k1b",
        "alpha",
        seal_envelope(
            ForumSecret("k1b", b"\x31" * 32),
            recipient="alpha",
            recipient_sealing_public=own.sealing_public,
            recipient_signing_public=own.signing_public,
            custodian=CUSTODIAN,
            custodian_keys=forum.people[CUSTODIAN].keys(),
            created_at=earlier,
            activate_at=None,
        ),
        datetime.now(UTC),
    )
    document = alpha.json("sync")
    assert [e["key_id"] for e in document["keys"]["installed"]] == ["k1b", "k2"]
    assert document["keys"]["refused"] == []


# ---------------------------------------------------------------------------------- local state


def test_a_schema_2_state_file_is_upgraded_with_the_key_tables(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    with LocalState.open(state_dir) as state:
        run = state.start_run("sync", datetime(2026, 1, 1, tzinfo=UTC))
    path = state_dir / STATE_FILE
    with closing(sqlite3.connect(path)) as db:  # as the previous client left it
        db.execute("DROP TABLE installed_epochs")
        db.execute("DROP TABLE refused_envelopes")
        db.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
        db.commit()
    assert SCHEMA_VERSION == 3
    with LocalState.open(state_dir) as state:
        assert state.installed_epochs() == []
        assert state.refused_envelopes() == []
        assert [r[2] for r in state.last_runs()] == ["sync"]
        assert run == 1
    with closing(sqlite3.connect(path)) as db:
        (version,) = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert version == "3"
    assert {"installed_epochs", "refused_envelopes"} <= tables


def test_installed_epochs_and_refusals_round_trip(tmp_path: Path) -> None:
    moment = datetime(2027, 1, 1, 12, 0, tzinfo=UTC)
    later = InstalledEpoch(
        key_id="k3",
        created_at=moment + timedelta(days=2),
        activate_at=moment + timedelta(days=9),
        custodian=CUSTODIAN,
        installed_at=moment + timedelta(days=3),
        path=tmp_path / "forum.k3.secret",
        envelope_sha256=b"\x03" * 32,
    )
    earlier = InstalledEpoch(
        key_id="k2",
        created_at=moment,
        activate_at=None,
        custodian=CUSTODIAN,
        installed_at=moment,
        path=tmp_path / "forum.k2.secret",
        envelope_sha256=None,
    )
    refusal = RefusedEnvelope(
        envelope_sha256=b"\x07" * 32,
        key_id="k4",
        custodian=CUSTODIAN,
        reason="seal",
        message="cannot be opened",
        at=moment,
    )
    with LocalState.open(tmp_path / "state") as state:
        state.record_installed_epoch(later)
        state.record_installed_epoch(earlier)
        assert state.installed_epochs() == [earlier, later]  # by creation, not installation
        state.mark_epoch_published("k3", moment + timedelta(days=10))
        state.mark_epoch_published("k3", moment + timedelta(days=11))  # the first sighting stays
        assert [e.published_seen_at for e in state.installed_epochs()] == [
            None,
            moment + timedelta(days=10),
        ]
        assert state.record_refused_envelope(refusal) is True
        assert state.record_refused_envelope(refusal) is False  # reported once
        signature = RefusedEnvelope(
            envelope_sha256=refusal.envelope_sha256,
            key_id="k4",
            custodian=CUSTODIAN,
            reason="signature",
            message="not the pinned key",
            at=moment + timedelta(days=1),
        )
        assert state.record_refused_envelope(signature) is True  # a new reason is news
        assert state.refused_envelopes() == [signature]


def test_the_first_secret_stays_usable_beside_installed_ones(distributing: SealedForum) -> None:
    forum = distributing
    alpha = forum.people["alpha"]
    activation = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    forum.rotate("k2", "--activate-at", activation.isoformat())
    alpha.ok("keys", "fetch")
    assert load_secret_file(alpha.secret_file) == FIRST_SECRET
    pushed = alpha.json("push", str(emails(alpha)))
    assert [s["name"] for s in pushed["submissions"]] == ["email"]
