"""The forum's verdicts back to members, over a real hub: a coordinator's decision on a shared
indicator or campaign, and its note for members, reach every member who reported it in its
next pull — ``sigshare matches`` shows them beside the member's own values and prompts, and
``--status`` filters on them — while a member who did not report it sees nothing.

The hub is provisioned through its CLI (``email`` at quorum 2 and the ``prompt`` family) and
serves on loopback in this process; members run ``sigshare`` and the coordinator runs
``sigshare-hub review --hub`` in this process too, each with its own credential file.

Members alpha and bravo hold two addresses (each in its own spelling) and the same prompts;
charlie holds one of the addresses too. Alpha and bravo confirm what they resolved, charlie
does not. The coordinator confirms one address with a note for members, dismisses the other,
and leaves a note for the members of the prompts' campaign.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from sigshare.client.cli import cli as client_cli
from sigshare.hub.cli import cli as hub_cli_group
from sigshare.hub.storage import make_engine, migrate
from sigshare.sketch.keys import ForumSecret, write_secret_file
from tests.support.cli import table_cells
from tests.support.e2e import (
    KEY_ID,
    client_env,
    hub_cli,
    write_config,
    write_indicator_csv,
    write_private,
    write_prompts,
)
from tests.support.hub import RunningHub, running_hub

MEMBERS = ("alpha", "bravo", "charlie")
COORDINATOR = "lead"
MULE = "mule.account@example.org"
TESTER = "qa.tester@example.org"
SPELLING = {
    "alpha": {MULE: "Mule.Account@Example.org", TESTER: "QA.Tester@example.org"},
    "bravo": {MULE: " mule.account@EXAMPLE.ORG ", TESTER: "qa.tester@Example.Org"},
    "charlie": {MULE: "MULE.ACCOUNT@example.org"},
}
"""Each member's own spelling of the addresses it holds (what its pipeline exports)."""
CATEGORY = {MULE: "fraud", TESTER: "testing"}
PROMPTS = [
    f"please summarise chapter {i} of the attached novel in three bullet points" for i in range(6)
]
CONFIRMED_NOTE = "confirmed mule account: block it and rate-limit its sign-ups"
DISMISSED_NOTE = "a test account of the forum's own QA team"
CAMPAIGN_NOTE = "seen at two firms: throttle long summarisation requests"


@dataclass
class Forum:
    directory: Path
    url: str
    hub: RunningHub
    env: dict[str, str]
    configs: dict[str, Path]
    coordinator_file: Path

    def member(self, name: str, *args: str) -> Result:
        """``sigshare ARGS --config <name's>`` as member ``name``."""
        result = CliRunner().invoke(
            client_cli, [*args, "--config", str(self.configs[name])], env=self.env
        )
        assert result.exception is None or isinstance(result.exception, SystemExit), result
        return result

    def matches(self, name: str, *args: str) -> dict[str, Any]:
        result = self.member(name, "matches", "--json", *args)
        assert result.exit_code == 0, result.output
        document: dict[str, Any] = json.loads(result.stdout)
        return document

    def review(self, *args: str) -> Result:
        """``sigshare-hub review --hub … ARGS`` as the coordinator."""
        connection = ["--hub", self.hub.target, "--credential-file", str(self.coordinator_file)]
        result = CliRunner().invoke(hub_cli_group, ["review", *connection, "--insecure", *args])
        assert result.exit_code == 0, result.output
        return result


@pytest.fixture(scope="module")
def forum(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Forum]:
    directory = tmp_path_factory.mktemp("verdicts")
    url = f"sqlite:///{directory / 'hub.db'}"
    migrate.upgrade(url)
    hub_cli(
        url,
        "params",
        "set",
        "email",
        "--key-id",
        KEY_ID,
        "--capacity",
        "100",
        "--fpr",
        "0.001",
        "--quorum",
        "2",
    )
    hub_cli(url, "params", "set-minhash", "prompt", "--key-id", KEY_ID, "--threshold", "0.5")
    credentials = {name: hub_cli(url, "member", "add", name).strip() for name in MEMBERS}
    credentials[COORDINATOR] = hub_cli(
        url, "member", "add", COORDINATOR, "--role", "coordinator"
    ).strip()
    secret_file = write_secret_file(directory / "forum.secret", ForumSecret.generate(KEY_ID))
    home = directory / "home"
    home.mkdir()
    configs = {
        name: write_config(
            directory / f"{name}.toml",
            hub="127.0.0.1:1",  # replaced below, once the hub has its port
            credential_file=write_private(directory / f"{name}.cred", credentials[name] + "\n"),
            secret_file=secret_file,
            state_dir=directory / f"state-{name}",
        )
        for name in MEMBERS
    }
    coordinator_file = write_private(directory / "lead.cred", credentials[COORDINATOR] + "\n")
    engine = make_engine(url)
    try:
        with running_hub(engine, credentials) as hub:
            for config in configs.values():
                text = config.read_text().replace("127.0.0.1:1", hub.target)
                write_private(config, text)
            forum = Forum(directory, url, hub, client_env(home), configs, coordinator_file)
            _share_and_decide(forum)
            yield forum
    finally:
        engine.dispose()


def _share_and_decide(forum: Forum) -> None:
    """Members sync and confirm; the coordinator decides; members pull again."""
    for name in MEMBERS:
        rows = [("email", spelled, CATEGORY[value]) for value, spelled in SPELLING[name].items()]
        rows += [("email", f"{name}.own.{i}@example.net", "fraud") for i in range(4)]
        files = [write_indicator_csv(forum.directory / f"{name}.csv", rows)]
        if name != "charlie":
            files.append(write_prompts(forum.directory / f"{name}.prompts.jsonl", PROMPTS))
        synced = forum.member(name, "sync", *map(str, files))
        assert synced.exit_code == 0, synced.output
    for name in MEMBERS:  # everyone's filters are in now: each learns what the others hold
        pulled = forum.member(name, "pull")
        assert pulled.exit_code == 0, pulled.output
    for name in ("alpha", "bravo"):
        confirmed = forum.member(name, "confirm", "--all")
        assert confirmed.exit_code == 0, confirmed.output
        assert confirmed.stdout.startswith("confirmed 2 of 2 chosen items"), confirmed.stdout

    def record_id(listing: str, *filters: str) -> str:
        document = json.loads(forum.review(listing, *filters, "--json").stdout)
        (record,) = document[listing]
        return str(record["id"])

    mule = record_id("indicators", "--category", CATEGORY[MULE])
    tester = record_id("indicators", "--category", CATEGORY[TESTER])
    campaign = record_id("campaigns")
    forum.review("set-status", mule, "triaged")
    forum.review(
        "set-status", mule, "confirmed", "--note", "internal", "--member-note", CONFIRMED_NOTE
    )
    forum.review("set-status", tester, "dismissed", "--member-note", DISMISSED_NOTE)
    forum.review("note", campaign, CAMPAIGN_NOTE, "--for-members")
    for name in MEMBERS:
        pulled = forum.member(name, "pull")
        assert pulled.exit_code == 0, pulled.output


def verdicts(document: dict[str, Any]) -> dict[str, tuple[str | None, str | None]]:
    """Own value → (forum status, forum note), from ``matches --json``."""
    return {
        item["value"]: (item["forum_status"], item["forum_note"]) for item in document["indicators"]
    }


def test_reporting_members_see_the_verdict_beside_their_own_values(forum: Forum) -> None:
    for name in ("alpha", "bravo"):
        document = forum.matches(name)
        assert verdicts(document) == {
            SPELLING[name][MULE]: ("confirmed", CONFIRMED_NOTE),
            SPELLING[name][TESTER]: ("dismissed", DISMISSED_NOTE),
        }, name
        [campaign] = {(c["forum_status"], c["forum_note"]) for c in document["campaigns"]}
        assert campaign == ("new", CAMPAIGN_NOTE)
        assert all(sorted(c["prompts"]) == sorted(PROMPTS) for c in document["campaigns"])


def test_a_member_who_did_not_report_sees_no_verdict(forum: Forum) -> None:
    document = forum.matches("charlie")
    assert verdicts(document) == {SPELLING["charlie"][MULE]: (None, None)}
    assert document["campaigns"] == []
    confirmed = forum.member("charlie", "matches", "--status", "confirmed")
    assert (confirmed.exit_code, confirmed.stdout) == (
        0,
        "none of your matches has the forum status confirmed\n",
    )


def test_matches_filter_on_the_forums_status(forum: Forum) -> None:
    confirmed = forum.matches("alpha", "--status", "confirmed")
    assert verdicts(confirmed) == {SPELLING["alpha"][MULE]: ("confirmed", CONFIRMED_NOTE)}
    assert confirmed["campaigns"] == []
    dismissed = forum.matches("bravo", "--status", "dismissed")
    assert verdicts(dismissed) == {SPELLING["bravo"][TESTER]: ("dismissed", DISMISSED_NOTE)}
    new = forum.matches("bravo", "--status", "new")
    assert (new["indicators"], len(new["campaigns"])) == ([], 1)
    usage = forum.member("alpha", "matches", "--status", "blocked")
    assert usage.exit_code == 2
    table = forum.member("alpha", "matches", "--status", "confirmed")
    assert table.exit_code == 0, table.output
    (row,) = table_cells(table.stdout)
    assert row == ["email", SPELLING["alpha"][MULE], "fraud", "2", "confirmed", CONFIRMED_NOTE]


def test_a_later_decision_replaces_what_members_were_told(forum: Forum) -> None:
    document = json.loads(
        forum.review("indicators", "--category", CATEGORY[TESTER], "--json").stdout
    )
    (tester,) = document["indicators"]
    forum.review("set-status", tester["id"], "triaged", "--note", "reopened")
    pulled = forum.member("alpha", "pull")
    assert pulled.exit_code == 0, pulled.output
    assert verdicts(forum.matches("alpha"))[SPELLING["alpha"][TESTER]] == ("triaged", None)
