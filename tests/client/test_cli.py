"""The ``sigshare`` command: exit codes, machine output and files, asserted exactly."""

from __future__ import annotations

import json
import os
import stat
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from sigshare.client.cli import cli
from sigshare.client.cli.errors import exit_code_for
from sigshare.client.config import ConfigError
from sigshare.client.errors import (
    HubAuthError,
    HubClientError,
    HubConfigError,
    HubProtocolError,
    HubRejectedError,
    HubUnavailableError,
)
from sigshare.client.exit_codes import ExitCode
from sigshare.client.inputs import InputFormatError
from sigshare.client.state import StateError
from sigshare.client.sync import (
    KeyEpochError,
    LockedError,
    NothingAcceptedError,
    Skipped,
    SkipReason,
    ValuesNotFoundError,
)
from sigshare.client.synthetic import firm_names, generate_forum
from sigshare.sketch.errors import KeyFileError, ParameterError, UnknownKindError
from sigshare.sketch.keys import load_secret_file


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


EXIT_CODES: dict[str, tuple[Exception, ExitCode]] = {
    "hub refused the credential": (HubAuthError("m"), ExitCode.AUTH),
    "hub unreachable": (HubUnavailableError("m"), ExitCode.NETWORK),
    "hub refused the request": (HubRejectedError("m"), ExitCode.REJECTED),
    "bad connection settings": (HubConfigError("m"), ExitCode.CONFIG),
    "hub broke the wire contract": (HubProtocolError("m"), ExitCode.FAILURE),
    "other SDK failure": (HubClientError("m"), ExitCode.FAILURE),
    "nothing a push was given was accepted": (
        NothingAcceptedError([Skipped("kind", "email", SkipReason.REFUSED, "m")]),
        ExitCode.REJECTED,
    ),
    "confirm --value names no resolved item": (ValuesNotFoundError(["v"]), ExitCode.INPUT),
    "secret of another key epoch": (KeyEpochError("m"), ExitCode.CONFIG),
    "configuration": (ConfigError("m"), ExitCode.CONFIG),
    "local state": (StateError("m"), ExitCode.CONFIG),
    "unreadable input file": (InputFormatError(Path("f"), "m"), ExitCode.INPUT),
    "another run holds the lock": (LockedError("m"), ExitCode.BUSY),
    "--kind names no kind": (UnknownKindError("x", ["email"]), ExitCode.USAGE),
    "forum secret file": (KeyFileError("m"), ExitCode.CONFIG),
    "a kind's options": (ParameterError("m"), ExitCode.CONFIG),
}


@pytest.mark.parametrize("case", sorted(EXIT_CODES))
def test_the_exit_code_table(case: str) -> None:
    error, code = EXIT_CODES[case]
    assert exit_code_for(error) is code


def test_an_error_outside_the_table_has_no_exit_code() -> None:
    assert exit_code_for(ValueError("a bug")) is None


def test_keygen_writes_owner_only_secret_and_never_prints_it(
    runner: CliRunner, tmp_path: Path
) -> None:
    target = tmp_path / "forum.secret"
    result = runner.invoke(cli, ["keygen", "--out", str(target), "--key-id", "k2026a", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document == {"path": str(target), "key_id": "k2026a", "mode": "0600"}
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    secret = load_secret_file(target)
    assert secret.key_id == "k2026a"
    assert len(secret.secret) == 32
    assert secret.secret.hex() not in result.output
    assert "secret =" not in result.output


def test_keygen_refuses_to_replace_a_secret_without_force(
    runner: CliRunner, tmp_path: Path
) -> None:
    target = tmp_path / "forum.secret"
    assert runner.invoke(cli, ["keygen", "--out", str(target), "--key-id", "a1"]).exit_code == 0
    before = target.read_bytes()
    refused = runner.invoke(cli, ["keygen", "--out", str(target), "--key-id", "b2"])
    assert refused.exit_code == ExitCode.CONFIG
    assert "already exists" in refused.stderr
    assert target.read_bytes() == before
    forced = runner.invoke(cli, ["keygen", "--out", str(target), "--key-id", "b2", "--force"])
    assert forced.exit_code == 0
    assert load_secret_file(target).key_id == "b2"


def test_keygen_rejects_a_bad_key_id_with_config_exit(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["keygen", "--out", str(tmp_path / "s"), "--key-id", "bad id!"])
    assert result.exit_code == ExitCode.CONFIG
    assert "key id" in result.stderr
    assert not (tmp_path / "s").exists()


def test_kinds_lists_every_kind_as_json(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["kinds", "--json"])
    assert result.exit_code == 0
    names = [kind["name"] for kind in json.loads(result.stdout)["kinds"]]
    assert names == [
        "email",
        "phone",
        "ip",
        "ip_prefix",
        "domain",
        "payment_fingerprint",
        "device_id",
        "username",
        "wallet",
    ]


def test_kinds_canonicalises_values_and_reports_rejects(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["kinds", "email", " Alice@Example.COM ", "not-an-email", "--json"])
    assert result.exit_code == 0
    results = json.loads(result.stdout)["results"]
    assert results[0] == {"input": " Alice@Example.COM ", "canonical": "alice@example.com"}
    assert results[1]["rejected"] == "bad_syntax"
    assert "not-an-email" not in results[1]["detail"]


def test_kinds_reads_values_from_stdin(runner: CliRunner) -> None:
    result = runner.invoke(
        cli, ["kinds", "ip", "--json"], input="::FFFF:192.0.2.1\n2001:DB8::0:1\n"
    )
    assert result.exit_code == 0
    canonical = [row["canonical"] for row in json.loads(result.stdout)["results"]]
    assert canonical == ["192.0.2.1", "2001:db8::1"]


def test_kinds_unknown_kind_is_a_usage_error(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["kinds", "fax", "123"])
    assert result.exit_code == ExitCode.USAGE
    assert "unknown kind 'fax'" in result.stderr


def test_demo_json_matches_ground_truth(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["demo", "--json", "--accounts", "600", "--seed", "11"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    scores = document["scores"]
    # Items held by 2+ firms are never missed: Bloom filters have no false negatives.
    assert scores["indicator_recall"] == 1.0
    # An item is reported as shared only when another firm's own filter holds all k = 15 of its
    # positions. With 600 items of a 10,000 capacity sized for a forum rate of 1e-3 among 32
    # members (m = 215,296), a filter is ~4.1 % full: fill^k ≈ 1.5e-21 per other filter, so the
    # expected number of false positives over all 5,400 items and 2 other firms is ≈ 1.6e-17;
    # any would be a bug.
    assert scores["indicator_precision"] == 1.0
    assert scores["campaign_recall"] == 1.0
    assert scores["campaign_precision"] == 1.0
    # The generator plants five malformed rows per kind and firm.
    expected_rejects = {
        "email": {"bad_syntax": 5},
        "phone": {"not_a_phone_number": 5},
        "ip": {"bad_address": 5},
    }
    for score in document["indicators"]:
        assert score["rejected"] == expected_rejects[score["kind"]]
        assert score["reported_shared"] == score["truly_shared"] == score["true_positives"]
    overlap = document["coordinator"]["overlap"]
    truth, estimate, stderr = overlap["truth"], overlap["estimate"], overlap["stderr"]
    for i in range(3):
        for j in range(3):
            if i != j:
                assert abs(estimate[i][j] - truth[i][j]) <= 5 * stderr[i][j] + 1
    # Every planned campaign of two or more firms reached the coordinators exactly once.
    assert sorted(len(c["members"]) for c in document["coordinator"]["campaigns"]) == [2, 2, 2, 3]
    assert document["coordinator"]["shared_indicator_records"] > 0
    # ... although every firm but the first worded its templates its own way.
    assert document["config"]["reword_rate"] == 0.2
    assert document["minhash"]["threshold"] == 0.25
    assert document["minhash"]["drop_stopwords"] is True
    assert_campaigns_found_although_reworded(document)


def assert_campaigns_found_although_reworded(document: dict[str, Any]) -> None:
    """Each campaign several firms see is reported with their wordings, which really differ (every
    holder but the verbatim firm edited a fifth of the template's words), and every holder was
    told about it: checked against the synthetic forum the demo was built from."""
    config = document["config"]
    forum = generate_forum(
        config["seed"],
        firm_names=firm_names(config["firms"]),
        accounts_per_firm=config["accounts_per_firm"],
        reword_rate=config["reword_rate"],
    )
    names = [firm.name for firm in forum.firms]
    rewording = document["rewording"]
    assert rewording["rate"] == config["reword_rate"] == 0.2
    assert rewording["verbatim_firm"] == names[0]
    shared = rewording["shared_campaigns"]
    assert [c["template"] for c in shared] == [
        campaign for campaign, owners in sorted(forum.campaign_firms.items()) if len(owners) >= 2
    ]
    for campaign in shared:
        holders = sorted(forum.campaign_firms[campaign["template"]])
        firms = [names[holder] for holder in holders]
        assert campaign["firms"] == firms
        assert campaign["wordings"] == {
            names[holder]: forum.campaign_wordings[campaign["template"]][holder]
            for holder in holders
        }
        assert campaign["reworded_by"] == [firm for firm in firms if firm != names[0]]
        # The rewording really happened: no two holders word the template alike.
        pairs = campaign["wording_similarity"]
        assert [pair["firms"] for pair in pairs] == [list(p) for p in combinations(firms, 2)]
        assert all(0.0 < pair["similarity"] < 1.0 for pair in pairs)
        assert campaign["lowest_wording_similarity"] == min(p["similarity"] for p in pairs)
        # ... and the hub joined all holders' clusters into one campaign all of them were told of.
        assert campaign["found_by"] == firms
        assert len(campaign["hub_campaigns"]) == 1


def test_demo_human_output_ends_with_the_ground_truth_check(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["demo", "--accounts", "300"])
    assert result.exit_code == 0
    assert "every firm but alpha-labs edited 20% of each template's words" in result.stdout
    assert "shared campaigns found although worded differently" in result.stdout
    assert "campaign recall 100.00% (9/9 firm-campaign pairs), precision 100.00%" in result.stdout
    assert "check against ground truth: indicator recall 100.00%" in result.stdout


def test_demo_rejects_out_of_range_sizes(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["demo", "--accounts", "5"])
    assert result.exit_code == ExitCode.USAGE
    assert "--accounts" in result.stderr


def test_demo_runs_a_forum_of_more_firms(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["demo", "--json", "--firms", "5", "--accounts", "300"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["config"]["firms"] == 5
    # With five firms the false-positive expectation is still negligible (see above: fewer
    # items per filter, four other filters per item): every score is exact.
    assert document["scores"] == {
        "indicator_recall": 1.0,
        "indicator_precision": 1.0,
        "campaign_recall": 1.0,
        "campaign_precision": 1.0,
    }
    scores = document["indicators"]
    assert len({score["firm"] for score in scores}) == 5
    assert sorted({score["kind"] for score in scores}) == ["email", "ip", "phone"]
    assert len(scores) == 15
    for score in scores:
        assert score["accepted"] == 300
        assert score["reported_shared"] == score["truly_shared"] == score["true_positives"]
    overlap = document["coordinator"]["overlap"]
    assert len(overlap["firms"]) == 5
    truth, estimate, stderr = overlap["truth"], overlap["estimate"], overlap["stderr"]
    for i in range(5):
        for j in range(5):
            if i != j:
                assert abs(estimate[i][j] - truth[i][j]) <= 5 * stderr[i][j] + 1
    assert_campaigns_found_although_reworded(document)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--firms", "1"], "'--firms': 1 is not in the range 2<=x<=24"),
        (["--firms", "5", "--accounts", "5000"], "lower --accounts"),
        (["--reword", "0.6"], "'--reword': 0.6 is not in the range 0.0<=x<=0.5"),
    ],
)
def test_demo_rejects_forums_it_cannot_build(
    runner: CliRunner, args: list[str], message: str
) -> None:
    result = runner.invoke(cli, ["demo", *args])
    assert result.exit_code == ExitCode.USAGE
    assert message in result.stderr
