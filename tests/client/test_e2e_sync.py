"""The member's nightly job end to end, as four firms and a hub operator run it.

A real ``sigshare-hub serve`` process on a loopback port over an SQLite file (provisioned with the
hub's own CLI: quorum 2, each kind's capacity exactly the largest firm's number of values, so every
filter is at its published capacity — the hardest case for false sharing); four members'
``sigshare init`` and ``sigshare sync`` as subprocesses over inputs written from the deterministic
synthetic forum; a second identical round, then the hub restarted on the same port and a third
round. What the members learn (``sigshare matches --json``) is scored against the forum's planned
ground truth: exact sets of shared values, numbers of other holders never below the truth and
above it only within the allowance the other members' own filters imply, and the campaigns each
firm shares.

The scenario runs once per test session (under xdist the workers share it through a lock file)
and records every command's output; the tests below read that record.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import stat
import subprocess
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from sigshare.client.cli import cli as client_cli
from sigshare.client.synthetic import SyntheticForum, firm_names, generate_forum
from sigshare.hub.services.parameters import RECOMMENDED_MINHASH
from sigshare.sketch.bloom import BloomParams
from sigshare.sketch.errors import InvalidValueError
from sigshare.sketch.keys import ForumSecret, load_secret_file
from tests.support.e2e import (
    KEY_ID,
    START_TIMEOUT,
    Command,
    Outcome,
    SecretWatch,
    canonical,
    client_env,
    filter_fpr,
    finish,
    hub_cli,
    own_filter,
    planned_holdings,
    prompt_labels,
    run_all,
    start,
    write_firm_inputs,
    write_private,
)
from tests.support.oracles import poisson_allowance
from tests.support.processes import start_hub_command, wait_for_port

SEED = 20_261_127
FIRMS = firm_names(4)
KINDS = ("email", "ip", "phone")
PROMPT_FAMILY = "prompt"
SUBMISSIONS = {*KINDS, f"minhash:{PROMPT_FAMILY}"}
ACCOUNTS_PER_FIRM = 400
FORUM_FPR = 1e-3
"""The forum-level false-shared rate the operator publishes (``params set --fpr``)."""
MAX_MEMBERS = 32
"""The forum size each kind's filters are sized for when the operator does not say (the hub's
default): each filter gets the rate ``FORUM_FPR / (MAX_MEMBERS − 1)`` at capacity."""
QUORUM = 2
THRESHOLD = RECOMMENDED_MINHASH.threshold
"""The operator publishes the prompt family with the recommended profile (no options): the
synthetic firms reword the shared templates, which the first release's θ 0.5 missed."""
MIN_CAMPAIGN_RECALL = 0.95
MIN_CLUSTER_PURITY = 0.9
"""Share of a reported cluster's prompts that must belong to its campaign."""
ROUNDS = ("sync1", "sync2", "sync3")


def make_forum() -> SyntheticForum:
    return generate_forum(
        SEED,
        firm_names=FIRMS,
        accounts_per_firm=ACCOUNTS_PER_FIRM,
        shared_fraction=0.3,
        prompts_per_campaign=(12, 20),
        organic_prompts=30,
    )


def capacities(forum: SyntheticForum) -> dict[str, int]:
    """Per kind, the largest number of distinct values one firm holds: the capacity the
    operator publishes, so that the largest firm's filter is exactly at capacity."""
    holdings = planned_holdings(forum)
    return {kind: max(len(firm[kind]) for firm in holdings) for kind in KINDS}


# ---------------------------------------------------------------------------------- scenario


class HubProcess:
    """``sigshare-hub serve --insecure`` in the background, logging JSON lines to a file."""

    def __init__(self, url: str, directory: Path, env: dict[str, str], name: str) -> None:
        self.log = directory / f"{name}.log"
        self.url = url
        self.directory = directory
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self.port_file: Path | None = None

    def start(self, listen: str = "127.0.0.1:0") -> None:
        self.process, self.port_file = start_hub_command(
            ["--db", self.url, "serve", "--insecure", "--listen", listen, "--log-json"],
            self.log,
            env=self.env,
            cwd=self.directory,
        )

    def port(self) -> int:
        """The bound port, once the hub serves."""
        assert self.process is not None
        assert self.port_file is not None
        return wait_for_port(self.process, self.port_file, time.monotonic() + START_TIMEOUT)

    def stop(self) -> tuple[int, str]:
        """SIGTERM (graceful stop); the exit code and the log."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return self.process.returncode, self.log.read_text()


def run_scenario(directory: Path) -> dict[str, Any]:
    """Provision, serve, init, three sync rounds (the hub restarted before the third), matches
    and status; every output recorded."""
    forum = make_forum()
    home = directory / "home"
    home.mkdir()
    env = client_env(home)
    watch = SecretWatch()
    url = f"sqlite:///{directory / 'hub.db'}"
    secret_file = directory / "forum.secret"
    record: dict[str, Any] = {"hubs": []}

    keygen = start(
        Command(["keygen", "--out", str(secret_file), "--key-id", KEY_ID], env, directory)
    )
    hub_cli(url, "db", "upgrade")
    hub = HubProcess(url, directory, env, "hub-1")
    hub.start()
    try:
        # The operator's provisioning, while the hub and keygen start up.
        parameters = {}
        for kind, capacity in capacities(forum).items():
            parameters[kind] = json.loads(
                hub_cli(
                    url,
                    *("params", "set", kind, "--key-id", KEY_ID),
                    *("--capacity", str(capacity), "--fpr", str(FORUM_FPR)),
                    *("--quorum", str(QUORUM), "--json"),
                )
            )
        parameters[PROMPT_FAMILY] = json.loads(
            hub_cli(
                url,
                *("params", "set-minhash", PROMPT_FAMILY, "--key-id", KEY_ID),
                *("--quorum", str(QUORUM), "--json"),
            )
        )
        record["parameters"] = parameters
        for firm in FIRMS:
            credential = hub_cli(url, "member", "add", firm).strip()
            watch.add_credential(firm, credential)
            write_private(directory / f"{firm}.cred", credential + "\n")
        keygen_outcome = finish(*keygen, watch, 60.0).ok()
        watch.add_forum_secret(load_secret_file(secret_file))
        for text in (keygen_outcome.stdout, keygen_outcome.stderr):
            watch.check(text, "sigshare keygen")
        inputs = {firm.name: write_firm_inputs(firm, directory) for firm in forum.firms}
        port = hub.port()

        def wave(name: str, commands: list[Command]) -> None:
            outcomes = run_all(commands, watch)
            record[name] = {firm: o.to_json() for firm, o in zip(FIRMS, outcomes, strict=True)}

        # A umask of 0 proves every file the client creates is private by its own doing.
        wave(
            "init",
            [
                Command(
                    [
                        "init",
                        *("--hub", f"127.0.0.1:{port}", "--insecure"),
                        *("--credential-file", str(directory / f"{firm}.cred")),
                        *("--secret-file", str(secret_file)),
                        *("--state-dir", str(directory / f"state-{firm}")),
                        *("--config", str(directory / f"{firm}.toml"), "--json"),
                    ],
                    env,
                    directory,
                    umask=0,
                )
                for firm in FIRMS
            ],
        )
        for outcome in record["init"].values():
            Outcome.from_json(outcome).ok()
        sync = [
            Command(
                [
                    "sync",
                    "--json",
                    "--config",
                    str(directory / f"{firm}.toml"),
                    *(str(path) for path in inputs[firm]),
                ],
                env,
                directory,
                umask=0,
            )
            for firm in FIRMS
        ]

        def local(command: str) -> list[Command]:
            return [
                Command(
                    [command, "--json", "--config", str(directory / f"{firm}.toml")],
                    env,
                    directory,
                    umask=0,
                )
                for firm in FIRMS
            ]

        # Round 1 runs the firms concurrently, so an early firm's pull may miss later filters;
        # round 2 (identical inputs) sees every filter; round 3, against a restarted hub, must
        # change nothing at all.
        wave("sync1", sync)
        wave("sync2", sync)
        # The snapshot to compare round 3 with, read in process (the same command, no
        # interpreter start-up); round 3's matches below come from a subprocess.
        record["matches2"] = {}
        for firm in FIRMS:
            snapshot = in_process_matches(directory / f"{firm}.toml", env)
            watch.check(snapshot.stdout + snapshot.stderr, "sigshare matches")
            record["matches2"][firm] = snapshot.to_json()
        record["hubs"].append(hub.stop())
        hub = HubProcess(url, directory, env, "hub-2")
        hub.start(f"127.0.0.1:{port}")
        assert hub.port() == port
        wave("sync3", sync)
        outcomes = run_all(local("matches") + local("status"), watch)
        count = len(FIRMS)
        record["matches3"] = {f: o.to_json() for f, o in zip(FIRMS, outcomes[:count], strict=True)}
        record["status"] = {f: o.to_json() for f, o in zip(FIRMS, outcomes[count:], strict=True)}
    finally:
        record["hubs"].append(hub.stop())
    for _, log in record["hubs"]:
        watch.check(log, "the hub's log")
    return record


def in_process_matches(config: Path, env: dict[str, str]) -> Outcome:
    started = time.monotonic()
    result = CliRunner().invoke(
        client_cli, ["matches", "--json", "--config", str(config)], env=env, catch_exceptions=False
    )
    return Outcome(
        args=("sigshare", "matches", "--json", "--config", str(config)),
        returncode=result.exit_code,
        stdout=result.stdout,
        stderr=result.stderr,
        seconds=time.monotonic() - started,
    )


@dataclass
class ForumRun:
    directory: Path
    record: dict[str, Any]
    forum: SyntheticForum
    secret: ForumSecret

    def outcome(self, step: str, firm: str) -> Outcome:
        return Outcome.from_json(self.record[step][firm])

    def document(self, step: str, firm: str) -> Any:
        return self.outcome(step, firm).ok().json()

    def bloom_params(self, kind: str) -> BloomParams:
        """The kind's parameters as the client derives them; the hub published the same."""
        published = self.record["parameters"][kind]
        assert published["capacity"] == capacities(self.forum)[kind]
        assert (published["forum_fpr"], published["max_members"]) == (FORUM_FPR, MAX_MEMBERS)
        params = BloomParams.for_forum(kind, KEY_ID, published["capacity"], FORUM_FPR, MAX_MEMBERS)
        assert (published["m"], published["k"]) == (params.m, params.k)
        assert bytes.fromhex(published["digest"]) == params.digest()
        return params

    def holdings(self) -> list[dict[str, dict[str, frozenset[int]]]]:
        return planned_holdings(self.forum)

    def filter_fprs(self, kind: str) -> list[float]:
        """Each firm's own filter's false-positive rate at its fill."""
        params = self.bloom_params(kind)
        return [filter_fpr(self.secret, params, firm[kind]) for firm in self.holdings()]


@pytest.fixture(scope="module")
def forum_run(tmp_path_factory: pytest.TempPathFactory) -> ForumRun:
    """The scenario's record, computed once per session even across xdist workers."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # shared by every worker of this run
    directory = root / "e2e-sync-forum"
    result_file = root / "e2e-sync-forum.json"
    with (root / "e2e-sync-forum.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not result_file.exists():
            started = time.monotonic()
            directory.mkdir()
            try:
                record = run_scenario(directory)
            except Exception:
                record = {"error": traceback.format_exc()}
            record["seconds"] = round(time.monotonic() - started, 1)
            temporary = result_file.with_suffix(".tmp")
            temporary.write_text(json.dumps(record))
            temporary.rename(result_file)
        record = json.loads(result_file.read_text())
    if "error" in record:
        pytest.fail(f"the end-to-end scenario failed:\n{record['error']}", pytrace=False)
    return ForumRun(
        directory=directory,
        record=record,
        forum=make_forum(),
        secret=load_secret_file(directory / "forum.secret"),
    )


# ---------------------------------------------------------------------------------- tests


def test_hub_process_serves_restarts_and_stops_cleanly(forum_run: ForumRun) -> None:
    assert len(forum_run.record["hubs"]) == 2
    for returncode, log in forum_run.record["hubs"]:
        assert returncode == 0, log
        messages = [json.loads(line)["message"] for line in log.splitlines()]
        assert any(m.startswith("serving ") for m in messages), messages
        # Every member call was authenticated and logged by principal name only.
        principals = {
            part.removeprefix("principal=")
            for m in messages
            if m.startswith("rpc ")
            for part in m.split()
            if part.startswith("principal=")
        }
        assert principals == set(FIRMS)


def test_init_writes_private_configuration_and_state(forum_run: ForumRun) -> None:
    for firm in FIRMS:
        document = forum_run.document("init", firm)
        assert document["checked"] is True
        assert document["key_id"] == KEY_ID
        assert {k["kind"] for k in document["hub_parameters"]["kinds"]} == set(KINDS)
        config = forum_run.directory / f"{firm}.toml"
        assert stat.S_IMODE(config.stat().st_mode) == 0o600
        state = forum_run.directory / f"state-{firm}"
        assert stat.S_IMODE(state.stat().st_mode) == 0o700
        files = sorted(state.iterdir())
        assert {p.name for p in files} >= {"state.db", "sync.lock", "rejects.jsonl"}
        modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
        assert set(modes.values()) == {oct(0o600)}, modes


def _expected_rejects(forum: SyntheticForum, firm: int) -> Counter[str]:
    """Reasons for the firm's invalid rows, from the kinds themselves."""
    reasons: Counter[str] = Counter()
    for kind, values in forum.firms[firm].indicators.items():
        for value in values:
            try:
                canonical(kind, value)
            except InvalidValueError as error:
                reasons[error.reason.value] += 1
    return reasons


def test_first_sync_submits_every_kind_and_counts_rejects(forum_run: ForumRun) -> None:
    holdings = planned_holdings(forum_run.forum)
    for index, firm in enumerate(FIRMS):
        document = forum_run.document("sync1", firm)
        push = document["push"]
        submissions = {s["name"]: s for s in push["submissions"]}
        assert set(submissions) == SUBMISSIONS
        for kind in KINDS:
            assert submissions[kind]["items"] == len(holdings[index][kind]), kind
            assert submissions[kind]["unchanged"] is False
        campaigns = {
            c for c in forum_run.forum.firms[index].prompt_campaign if c >= 0
        }  # one template cluster per campaign the firm sees
        assert submissions[f"minhash:{PROMPT_FAMILY}"]["items"] == len(campaigns)
        expected = _expected_rejects(forum_run.forum, index)
        assert sum(expected.values()) == len(KINDS) * forum_run.forum.bad_rows_per_firm
        assert push["rejects"] == dict(expected)
        assert push["rejected"] == sum(expected.values())
        rejects_file = Path(push["rejects_file"])
        lines = [json.loads(line) for line in rejects_file.read_text().splitlines()]
        assert Counter(line["reason"] for line in lines) == expected
        assert set(document["pull"]["shared_indicators"]) == set(KINDS)


def test_every_filter_is_at_its_published_capacity(forum_run: ForumRun) -> None:
    """Each kind's published capacity is the largest firm's number of values, and here every
    firm holds that many: all filters are as full as the parameters allow, where false sharing
    is likeliest (resolving positions one by one reported 31–57 % false matches here)."""
    holdings = forum_run.holdings()
    for kind, capacity in capacities(forum_run.forum).items():
        assert forum_run.bloom_params(kind).capacity == capacity
        assert {len(firm[kind]) for firm in holdings} == {capacity}, kind
    for index, firm in enumerate(FIRMS):
        pushed = forum_run.document("sync1", firm)["push"]["submissions"]
        items = {s["name"]: s["items"] for s in pushed}
        assert {kind: items[kind] for kind in KINDS} == {
            kind: len(holdings[index][kind]) for kind in KINDS
        }


def _reported(forum_run: ForumRun, firm: str) -> dict[str, dict[str, int]]:
    """Per kind: the canonical values ``sigshare matches`` lists, with their other holders."""
    reported: dict[str, dict[str, int]] = {kind: {} for kind in KINDS}
    for item in forum_run.document("matches3", firm)["indicators"]:
        assert set(item) == {
            "kind",
            "value",
            "category",
            "other_members",
            "forum_status",
            "forum_note",
        }, item
        value = canonical(item["kind"], item["value"])
        assert value not in reported[item["kind"]], f"{firm}: {value} reported twice"
        reported[item["kind"]][value] = item["other_members"]
    return reported


def test_shared_indicators_match_ground_truth(
    forum_run: ForumRun, record_property: Callable[[str, object], None]
) -> None:
    """Recall 100 %, and no count below the true number of other holders; false positives and
    over-counts within the allowance the firms' own filters imply, and so precision at least
    1 − (that allowance / everything reported)."""
    holdings = forum_run.holdings()
    fprs = {kind: forum_run.filter_fprs(kind) for kind in KINDS}
    reported_total = true_positives = truly_shared_total = 0
    expected_fp_total = 0.0
    summary = []
    for index, firm in enumerate(FIRMS):
        reported = _reported(forum_run, firm)
        for kind in KINDS:
            held = holdings[index][kind]
            truth = {v: len(owners) - 1 for v, owners in held.items() if len(owners) >= QUORUM}
            found = reported[kind]
            assert set(found) <= set(held), f"{firm} {kind}: reported values it never held"
            missed = sorted(set(truth) - set(found))
            assert not missed, f"{firm} {kind}: {len(missed)} shared values missed: {missed[:5]}"
            under = {v: (found[v], n) for v, n in truth.items() if found[v] < n}
            assert not under, f"{firm} {kind}: fewer other holders than the truth: {under}"
            false_positives = sorted(set(found) - set(truth))
            over_counted = {v: (found[v], n) for v, n in truth.items() if found[v] > n}

            # The hub counts a firm as holding a value when that firm's own filter holds all k
            # of its positions. A firm that does not hold the value does so with probability
            # fpr_j (its filter's rate at its fill), so the value is over-counted, or reported
            # though fewer than quorum firms hold it, with probability at most the sum of fpr_j
            # over the firms that do not hold it.
            def false_rate(owners: frozenset[int], kind: str = kind) -> float:
                return sum(fpr for j, fpr in enumerate(fprs[kind]) if j not in owners)

            expected_fp = sum(false_rate(o) for o in held.values() if len(o) < QUORUM)
            expected_over = sum(false_rate(o) for o in held.values() if len(o) >= QUORUM)
            allowed_fp = poisson_allowance(expected_fp)
            allowed_over = poisson_allowance(expected_over)
            summary.append(
                f"{firm}/{kind}: {len(found)} reported, {len(truth)} shared of {len(held)}; "
                f"{len(false_positives)} false positives (expected {expected_fp:.1e}, allowed "
                f"{allowed_fp}), {len(over_counted)} over-counted (expected "
                f"{expected_over:.1e}, allowed {allowed_over})"
            )
            assert len(false_positives) <= allowed_fp, f"{firm} {kind}: {false_positives}"
            assert len(over_counted) <= allowed_over, f"{firm} {kind}: {over_counted}"
            expected_fp_total += expected_fp
            reported_total += len(found)
            truly_shared_total += len(truth)
            true_positives += len(set(found) & set(truth))
    recall = true_positives / truly_shared_total
    precision = true_positives / reported_total
    # Everything reported that is not truly shared is a false positive: at most the allowance
    # of their expected total, so precision ≥ 1 − allowance / reported.
    min_precision = 1 - poisson_allowance(expected_fp_total) / reported_total
    record_property("indicator_recall", recall)
    record_property("indicator_precision", precision)
    record_property("indicator_min_precision", min_precision)
    print(
        f"indicators: recall {recall:.4f}, precision {precision:.4f} (at least "
        f"{min_precision:.4f}); filter FPRs "
        + ", ".join(f"{kind} {max(rates):.1e}" for kind, rates in fprs.items()),
        *summary,
        sep="\n  ",
    )
    assert truly_shared_total > 0
    assert recall == 1.0
    assert precision >= min_precision


def test_repeated_pulls_stay_within_the_query_budgets(forum_run: ForumRun) -> None:
    """Every round asks about the same values again: repeats cost no query budget, so no pull
    leaves a value unanswered, and the hub's copy of each filter holds every value it pushed."""
    for firm in FIRMS:
        for step in ROUNDS:
            pull = forum_run.document(step, firm)["pull"]
            assert (pull["over_budget"], pull["budget_frees_at"], pull["not_held"]) == (
                {},
                {},
                {},
            ), (firm, step)


def test_shared_campaigns_match_ground_truth(
    forum_run: ForumRun, record_property: Callable[[str, object], None]
) -> None:
    """Every campaign two or more firms run appears for each of them, with the number of
    other holders; each reported cluster is (almost) purely that campaign's prompts."""
    campaign_firms = forum_run.forum.campaign_firms
    wanted = {
        (firm, campaign)
        for campaign, owners in campaign_firms.items()
        if len(owners) >= QUORUM
        for firm in owners
    }
    found: set[tuple[int, int]] = set()
    for index, firm in enumerate(FIRMS):
        labels = prompt_labels(forum_run.forum.firms[index])
        for cluster in forum_run.document("matches3", firm)["campaigns"]:
            votes = Counter(labels[text] for text in cluster["prompts"])
            campaign, count = votes.most_common(1)[0]
            purity = count / len(cluster["prompts"])
            assert campaign >= 0, f"{firm}: organic prompts reported as a campaign: {votes}"
            assert purity >= MIN_CLUSTER_PURITY, f"{firm}: mixed cluster {votes}"
            owners = campaign_firms[campaign]
            assert (index, campaign) in wanted, (
                f"{firm}: campaign {campaign} reported but held by firms {sorted(owners)}"
            )
            assert cluster["other_members"] == len(owners) - 1, (firm, campaign, cluster)
            assert THRESHOLD <= cluster["similarity"] <= 1.0
            found.add((index, campaign))
    recall = len(found & wanted) / len(wanted)
    record_property("campaign_recall", recall)
    print(f"campaigns: {len(found)} of {len(wanted)} (firm, shared campaign) pairs found")
    assert recall >= MIN_CAMPAIGN_RECALL, sorted(wanted - found)


def test_rerunning_sync_changes_nothing(forum_run: ForumRun) -> None:
    for firm in FIRMS:
        first, second, third = (forum_run.document(step, firm) for step in ROUNDS)
        ids = {s["name"]: s["submission_id"] for s in first["push"]["submissions"]}
        for document in (second, third):
            submissions = document["push"]["submissions"]
            assert {s["name"]: s["submission_id"] for s in submissions} == ids
            assert all(s["unchanged"] for s in submissions), submissions
            assert document["push"]["rejects"] == first["push"]["rejects"]
        assert third["pull"] == second["pull"]
        assert forum_run.document("matches3", firm) == forum_run.document("matches2", firm)


def test_status_lists_the_submissions(forum_run: ForumRun) -> None:
    holdings = forum_run.holdings()
    for index, firm in enumerate(FIRMS):
        document = forum_run.document("status", firm)
        assert document["member"] == firm
        pushed = {s["name"]: s for s in forum_run.document("sync1", firm)["push"]["submissions"]}
        listed = {s["kind"]: s for s in document["submissions"]}
        assert len(listed) == len(document["submissions"]), "a kind is listed twice"
        assert set(listed) == SUBMISSIONS
        for name, submission in listed.items():
            assert submission["id"] == pushed[name]["submission_id"]
            assert submission["items"] == pushed[name]["items"]
            assert submission["status"] == "active"
            if name in KINDS:
                # The hub's health figures of the filter, against the filter built here.
                params = forum_run.bloom_params(name)
                fill = own_filter(forum_run.secret, params, holdings[index][name]).fill()
                assert submission["fill"] == fill, name
                assert submission["fpr_at_fill"] == pytest.approx(params.fpr_at_fill(fill))
        syncs = [run for run in document["runs"] if run["command"] != "status"]
        assert [run["command"] for run in syncs[:3]] == ["sync"] * 3, document["runs"]
        assert all(run["outcome"] == "ok" for run in syncs[:3]), document["runs"]
