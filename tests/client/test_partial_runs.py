"""Partial runs and honest small commands, over a real hub.

The hub is provisioned the way the operator guide provisions it before anyone runs
``params set-minhash``: indicator kinds only (``email``, and ``device_id`` with a small capacity),
no MinHash family. Its real servicers and authentication serve on a loopback port in this
process; members run the installed ``sigshare`` script in subprocesses, because exit codes are
process-level.

A kind or family the hub does not publish, that exceeds its capacity, or whose sketch it refuses
is skipped: the rest is pushed, the pull runs, the summary names what was skipped and why, and
the command exits 8 (partial). A push that could send nothing exits 7. ``confirm`` names values
it did not find and exits 5; ``status`` answers from local state when the hub is down;
``matches`` says when nothing was pulled yet.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest
from sqlalchemy import Engine

from sigshare.client.errors import HubRejectedError
from sigshare.client.exit_codes import ExitCode
from sigshare.client.hub_client import HubClient, HubConnection, RetryPolicy
from sigshare.client.state import LocalState
from sigshare.client.sync import Skipped, SkipReason, SyncJob
from sigshare.hub.storage import make_engine, migrate, session_scope
from sigshare.hub.storage.principals import PrincipalRepository
from sigshare.hub.storage.submissions import SubmissionRepository
from sigshare.sketch.keys import ForumSecret, write_secret_file
from tests.support.e2e import (
    KEY_ID,
    Command,
    Outcome,
    SecretWatch,
    client_env,
    hub_cli,
    run,
    write_config,
    write_indicator_csv,
    write_private,
    write_prompts,
)
from tests.support.hub import RunningHub, running_hub

PARTIAL = int(ExitCode.PARTIAL)
DEVICE_CAPACITY = 3
MEMBERS = ("peer", "partial", "push-only", "mixed", "refused", "pull-refused", "fresh")
SHARED = tuple(f"shared.{i:02d}@example.org" for i in range(6))
"""Addresses the peer holds too: each member that holds them learns one other holder each."""
PROMPTS = [
    f"please summarise chapter {i} of the attached novel in three bullet points" for i in range(6)
]
NO_FAMILY = "the hub has no MinHash family 'prompt' for prompts; the prompts were not sent"


@dataclass
class Member:
    name: str
    config: Path
    state_dir: Path
    forum: Forum

    def command(self, command: str, *args: str | Path) -> Command:
        return Command(
            [command, "--config", str(self.config), *(str(a) for a in args)],
            self.forum.env,
            self.forum.directory,
        )

    def run(self, command: str, *args: str | Path) -> Outcome:
        return run(self.command(command, *args), self.forum.watch)

    def emails(self, own: int = 4) -> Path:
        """The shared addresses and ``own`` of the member's own."""
        rows = [("email", value, "fraud") for value in SHARED]
        rows += [("email", f"{self.name}.{i}@example.net", "fraud") for i in range(own)]
        return write_indicator_csv(self.forum.directory / f"{self.name}.csv", rows)

    def prompts(self) -> Path:
        return write_prompts(self.forum.directory / f"{self.name}.prompts.jsonl", PROMPTS)

    def active_kinds(self) -> list[str]:
        with session_scope(self.forum.engine) as session:
            principal = PrincipalRepository(session).get_by_name(self.name)
            assert principal is not None
            return sorted(
                s.family_kind for s in SubmissionRepository(session).of_member(principal.id)
            )


@dataclass
class Forum:
    directory: Path
    engine: Engine
    hub: RunningHub
    secret: ForumSecret
    secret_file: Path
    watch: SecretWatch
    env: dict[str, str]

    def member(
        self,
        name: str,
        *,
        label: str | None = None,
        hub: str | None = None,
        state_dir: Path | None = None,
    ) -> Member:
        """``name``'s configuration; ``label`` names another one, for another ``hub`` address
        or over another ``state_dir``."""
        label = label or name
        credential_file = write_private(
            self.directory / f"{label}.cred", self.hub.credentials[name] + "\n"
        )
        state_dir = state_dir or self.directory / f"state-{label}"
        config = write_config(
            self.directory / f"{label}.toml",
            hub=hub or self.hub.target,
            credential_file=credential_file,
            secret_file=self.secret_file,
            state_dir=state_dir,
            retries=0,
            timeout_seconds=10.0,
        )
        return Member(name, config, state_dir, self)


@pytest.fixture(scope="module")
def forum(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Forum]:
    directory = tmp_path_factory.mktemp("partial")
    url = f"sqlite:///{directory / 'hub.db'}"
    migrate.upgrade(url)
    for kind, capacity in (("email", 100), ("device_id", DEVICE_CAPACITY)):
        hub_cli(
            url,
            *("params", "set", kind, "--key-id", KEY_ID, "--capacity", str(capacity)),
            *("--fpr", "0.001", "--quorum", "2"),
        )
    credentials = {name: hub_cli(url, "member", "add", name).strip() for name in MEMBERS}
    secret = ForumSecret.generate(KEY_ID)
    secret_file = write_secret_file(directory / "forum.secret", secret)
    watch = SecretWatch()
    watch.add_forum_secret(secret)
    for name, credential in credentials.items():
        watch.add_credential(name, credential)
    home = directory / "home"
    home.mkdir()
    engine = make_engine(url)
    try:
        with running_hub(engine, credentials) as hub:
            forum = Forum(directory, engine, hub, secret, secret_file, watch, client_env(home))
            peer = forum.member("peer")
            peer.run("push", peer.emails()).ok()
            yield forum
    finally:
        engine.dispose()


def skipped_lines(outcome: Outcome) -> list[str]:
    return [line for line in outcome.stderr.splitlines() if line.startswith("warning: skipped")]


# ---------------------------------------------------------------------------------- partial


@dataclass
class PartialSync:
    member: Member
    human: Outcome
    document: Outcome
    matches: Outcome
    status: Outcome


@pytest.fixture(scope="module")
def partial_sync(forum: Forum) -> PartialSync:
    """The issue's night: accounts and prompts, against a hub without a prompt family."""
    member = forum.member("partial")
    files = (member.emails(), member.prompts())
    human = member.run("sync", *files)
    document = member.run("sync", "--json", *files)
    return PartialSync(
        member, human, document, member.run("matches", "--json"), member.run("status", "--json")
    )


def test_a_family_the_hub_lacks_skips_the_prompts_and_the_rest_is_pushed_and_pulled(
    partial_sync: PartialSync,
) -> None:
    human = partial_sync.human.expect(PARTIAL)
    (line,) = human.stdout.splitlines()
    assert line.startswith(
        f"sync: pushed email {len(SHARED) + 4}; skipped family prompt (not_published); "
        f"{len(SHARED)} shared indicators, 0 campaigns ("
    )
    assert skipped_lines(human) == [f"warning: skipped family prompt: {NO_FAMILY}"]
    assert "error" not in human.stderr
    assert partial_sync.member.active_kinds() == ["email"]
    matched = {item["value"] for item in partial_sync.matches.ok().json()["indicators"]}
    assert matched == set(SHARED)


def test_the_partial_sync_says_the_same_in_json(partial_sync: PartialSync) -> None:
    document = partial_sync.document.expect(PARTIAL).json()
    assert document["outcome"] == "partial"
    assert document["skipped"] == [
        {"family": "prompt", "reason": "not_published", "message": NO_FAMILY}
    ]
    (email,) = document["push"]["submissions"]
    assert (email["name"], email["unchanged"]) == ("email", True)
    assert document["pull"]["shared_indicators"] == {"email": len(SHARED)}
    assert partial_sync.document.stderr == ""


def test_the_run_log_records_partial_runs(partial_sync: PartialSync) -> None:
    runs = partial_sync.status.ok().json()["runs"]
    assert [(r["command"], r["outcome"]) for r in runs[:2]] == [
        ("sync", "partial"),
        ("sync", "partial"),
    ]


def test_a_push_alone_is_partial_too_and_exits_7_when_nothing_could_be_sent(
    forum: Forum,
) -> None:
    member = forum.member("push-only")
    prompts = member.prompts()
    partial = member.run("push", "--json", member.emails(), prompts).expect(PARTIAL).json()
    assert [s["name"] for s in partial["submissions"]] == ["email"]
    assert (partial["outcome"], partial["skipped"]) == (
        "partial",
        [{"family": "prompt", "reason": "not_published", "message": NO_FAMILY}],
    )
    human = member.run("push", member.emails(), prompts).expect(PARTIAL)
    assert human.stdout.startswith(
        f"pushed email {len(SHARED) + 4} (unchanged); skipped family prompt (not_published) ("
    )
    nothing = member.run("push", "--json", prompts).expect(ExitCode.REJECTED).json()
    assert nothing == {
        "error": f"nothing was pushed: family prompt: {NO_FAMILY}",
        "exit_code": 7,
        "status": "rejected",
    }
    assert member.active_kinds() == ["email"]


def test_unpublished_and_over_capacity_kinds_are_skipped_with_their_reasons(
    forum: Forum,
) -> None:
    member = forum.member("mixed")
    rows = [("email", value, "") for value in SHARED]
    rows += [("device_id", f"device-{i}", "") for i in range(DEVICE_CAPACITY + 1)]
    rows += [("phone", "+44 20 7946 0123", ""), ("phone", "+44 20 7946 0124", "")]
    inputs = write_indicator_csv(forum.directory / "mixed.csv", rows)
    document = member.run("sync", "--json", inputs).expect(PARTIAL).json()
    assert document["skipped"] == [
        {
            "kind": "device_id",
            "reason": "over_capacity",
            "message": f"{DEVICE_CAPACITY + 1} distinct device_id values exceed the hub's "
            f"capacity of {DEVICE_CAPACITY} per member; send the most relevant ones or ask the "
            "forum to raise the capacity",
        },
        {
            "kind": "phone",
            "reason": "not_published",
            "message": "the hub does not enable kind 'phone'; its rows were not sent",
        },
    ]
    assert document["push"]["rejects"] == {"kind_not_enabled": 2}
    assert document["pull"]["shared_indicators"] == {"email": len(SHARED)}
    assert member.active_kinds() == ["email"]


def test_a_kind_the_hub_refuses_is_skipped_and_the_others_are_sent(forum: Forum) -> None:
    """The forum allows one replacement of a kind's filter per hour (``device_id`` keeps the
    default interval): a second filter of other devices the same hour is refused."""
    member = forum.member("refused")
    emails = member.emails()

    def devices(*names: str) -> Path:
        return write_indicator_csv(
            forum.directory / "refused-devices.csv", [("device_id", n, "") for n in names]
        )

    member.run("push", emails, devices("device-a", "device-b")).ok()
    outcome = member.run("sync", "--json", emails, devices("device-c")).expect(PARTIAL)
    document = outcome.json()
    (skipped,) = document["skipped"]
    assert (skipped["kind"], skipped["reason"]) == ("device_id", "refused")
    assert skipped["message"].startswith("your filter was last replaced at ")  # no "device_id: "
    assert "the forum allows one replacement per 3600 s" in skipped["message"]
    assert [(s["name"], s["unchanged"]) for s in document["push"]["submissions"]] == [
        ("email", True)
    ]
    assert document["pull"]["shared_indicators"] == {"email": len(SHARED)}


def test_a_resolution_the_hub_refuses_skips_that_kind_and_the_pull_goes_on(
    forum: Forum,
) -> None:
    member = forum.member("pull-refused")
    member.run(
        "push",
        member.emails(),
        write_indicator_csv(
            forum.directory / "pull-refused-devices.csv", [("device_id", "device-z", "")]
        ),
    ).ok()
    refusal = "submit a filter of kind device_id before resolving it (injected)"
    with (
        HubClient(
            HubConnection(
                target=forum.hub.target,
                credential=forum.hub.credentials["pull-refused"],
                insecure=True,
            ),
            retry=RetryPolicy(attempts=1),
        ) as client,
        LocalState.open(member.state_dir) as state,
    ):
        real = client.resolve

        def refuse_devices(kind: str, *args: object, **kwargs: object) -> object:
            if kind == "device_id":
                raise HubRejectedError(refusal, status="FAILED_PRECONDITION")
            return real(kind, *args, **kwargs)  # type: ignore[arg-type]

        job = SyncJob(client=client, state=state, secret=forum.secret)
        with mock.patch.object(client, "resolve", side_effect=refuse_devices):
            report = job.pull()
    assert report.skipped == [Skipped("kind", "device_id", SkipReason.REFUSED, refusal)]
    assert report.shared_indicators == {"email": len(SHARED)}


# ---------------------------------------------------------------------------------- small commands


def test_confirm_names_the_values_it_did_not_find_and_confirms_nothing(
    partial_sync: PartialSync,
) -> None:
    member = partial_sync.member
    typo = member.run("confirm", "--value", "nobody@example.com", "--value", SHARED[0])
    typo.expect(ExitCode.INPUT)
    assert typo.stderr.strip() == (
        'error: not among your resolved matches: "nobody@example.com"; nothing was confirmed '
        "(`sigshare matches` lists them)"
    )
    assert typo.stdout == ""
    narrowed = member.run(
        "confirm", "--json", "--kind", "email", "--category", "other", "--value", SHARED[0]
    ).expect(ExitCode.INPUT)
    assert narrowed.json()["error"].startswith(
        f"not among your resolved matches (kind email, category 'other'): \"{SHARED[0]}\";"
    )
    runs = member.run("status", "--json").ok().json()["runs"]
    assert [(r["command"], r["outcome"]) for r in runs[:2]] == [
        ("confirm", "ValuesNotFoundError"),
        ("confirm", "ValuesNotFoundError"),
    ]
    found = member.run("confirm", "--json", "--value", SHARED[1]).ok().json()
    assert (found["chosen"], found["kinds"]["email"]["accepted"]) == (1, 1)


def test_status_answers_from_local_state_when_the_hub_is_down(
    partial_sync: PartialSync, forum: Forum
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{probe.getsockname()[1]}"
    offline = forum.member(
        "partial", label="partial-offline", hub=closed, state_dir=partial_sync.member.state_dir
    )
    human = offline.run("status").ok()
    warnings = [line for line in human.stderr.splitlines() if line]
    assert len(warnings) == 1, human.stderr
    assert warnings[0].startswith(
        "warning: the hub could not be reached, showing local state only: "
    )
    assert closed in warnings[0]
    assert "last submissions (local record)" in human.stdout
    assert "last local runs" in human.stdout
    assert "partial" in human.stdout
    document = offline.run("status", "--json").ok().json()
    assert document["member"] is None
    assert closed in document["hub_error"]
    assert document["submissions"] == []
    (email,) = document["local_submissions"]
    assert (email["name"], email["items"]) == ("email", len(SHARED) + 4)
    assert email["submission_id"] is not None
    assert "partial" in {r["outcome"] for r in document["runs"]}
    online = partial_sync.member.run("status", "--json").ok().json()
    assert online["hub_error"] is None
    assert online["member"] == "partial"
    assert [s["kind"] for s in online["submissions"]] == ["email"]


def test_matches_says_when_nothing_was_pulled_yet(forum: Forum) -> None:
    member = forum.member("fresh")
    before = member.run("matches").ok()
    assert before.stdout.strip() == (
        "nothing pulled yet: run `sigshare sync` (or `sigshare pull`) first"
    )
    document = member.run("matches", "--json").ok().json()
    assert (document["pulled"], document["indicators"], document["campaigns"]) == (False, [], [])
    member.run(
        "sync",
        write_indicator_csv(
            forum.directory / "fresh.csv", [("email", "fresh.only@example.net", "")]
        ),
    ).ok()
    after = member.run("matches").ok()
    assert "nothing pulled yet" not in after.stdout
    assert "shared indicators" in after.stdout
    assert member.run("matches", "--json").ok().json()["pulled"] is True
