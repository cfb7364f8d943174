"""Shared pieces of the member-client end-to-end tests: the installed console scripts run as
subprocesses, the hub provisioned through its own CLI, input files written from the synthetic
forum, exact ground truth from the forum's plan, and the false-positive rates of the members'
own filters that a resolution's over-counts are allowed from.

Nothing here is a fixture. Every subprocess run goes through :func:`run` / :func:`run_all`, which
also assert that no secret (hub credential, forum secret) ever appears in stdout or stderr.
"""

from __future__ import annotations

import base64
import csv
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from click.testing import CliRunner

from sigshare.client.synthetic import (
    FirmData,
    SyntheticForum,
    account_email,
    account_ip,
    account_phone,
)
from sigshare.hub.cli import cli as hub_cli_group
from sigshare.sketch.bloom import BloomParams, KeyedBloomFilter
from sigshare.sketch.keys import ForumSecret, KeyPurpose
from sigshare.sketch.kinds import get_kind
from sigshare.sketch.prf import KeyedPRF

BIN = Path(sys.executable).parent
SIGSHARE = BIN / "sigshare"
KEY_ID = "k1"
COMMAND_TIMEOUT = 90.0
START_TIMEOUT = 30.0

PLANNED_VALUE = {"email": account_email, "phone": account_phone, "ip": account_ip}
"""Kind → the synthetic forum's planned (unspelled) value of an account number."""

_SCRUBBED_ENV = ("SIGSHARE_CONFIG", "SIGSHARE_HUB_DB", "PYTHONWARNINGS")


# ---------------------------------------------------------------------------------- processes


def client_env(home: Path) -> dict[str, str]:
    """The environment of a member's job: nothing inherited that names a config or database,
    and a private home so no run reads or writes the real user's files."""
    env = {key: value for key, value in os.environ.items() if key not in _SCRUBBED_ENV}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_STATE_HOME=str(home / ".local" / "state"),
        PYTHONUNBUFFERED="1",
        COLUMNS="200",
        NO_COLOR="1",
    )
    return env


@dataclass
class SecretWatch:
    """Strings that must never be printed by any command: credentials and the forum secret."""

    forbidden: dict[str, str] = field(default_factory=dict)
    """Secret text → a description for the failure message (never the secret itself)."""

    def add_credential(self, name: str, credential: str) -> None:
        self.forbidden[credential] = f"credential of {name}"
        # The secret part alone must not leak either: sgs1_<16 hex id>_<secret>, where the
        # secret (URL-safe base64) may itself contain "_".
        prefix, credential_id, secret = credential.split("_", 2)
        assert (prefix, len(credential_id)) == ("sgs1", 16), "not a sigshare credential"
        assert len(secret) >= 32
        self.forbidden[secret] = f"secret part of {name}'s credential"

    def add_forum_secret(self, secret: ForumSecret) -> None:
        self.forbidden[base64.b64encode(secret.secret).decode()] = "forum secret (base64)"
        self.forbidden[secret.secret.hex()] = "forum secret (hex)"
        self.forbidden[base64.urlsafe_b64encode(secret.secret).decode().rstrip("=")] = (
            "forum secret (base64url)"
        )

    def check(self, text: str, where: str) -> None:
        leaked = [what for secret, what in self.forbidden.items() if secret in text]
        assert not leaked, f"{where} printed {', '.join(leaked)}"


@dataclass(frozen=True)
class Outcome:
    """One finished command: its arguments, exit code, output and wall time."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def json(self) -> Any:
        try:
            return json.loads(self.stdout)
        except json.JSONDecodeError:
            raise AssertionError(
                f"{self.describe()}: stdout is not one JSON document:\n{self.stdout}"
            ) from None

    def describe(self) -> str:
        return f"`{' '.join(self.args)}` (exit {self.returncode})"

    def ok(self) -> Outcome:
        assert self.returncode == 0, f"{self.describe()}:\n{self.stderr}\n{self.stdout}"
        return self

    def expect(self, code: int) -> Outcome:
        assert self.returncode == code, (
            f"{self.describe()}, expected exit {code}:\n{self.stderr}\n{self.stdout}"
        )
        return self

    def to_json(self) -> dict[str, Any]:
        return {
            "args": list(self.args),
            "returncode": self.returncode,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "seconds": self.seconds,
        }

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> Outcome:
        return cls(
            args=tuple(document["args"]),
            returncode=document["returncode"],
            stdout=document["stdout"],
            stderr=document["stderr"],
            seconds=document["seconds"],
        )


@dataclass
class Command:
    """A command to run: the ``sigshare`` script and its arguments."""

    args: Sequence[str]
    env: Mapping[str, str]
    cwd: Path
    umask: int = 0o077


def start(command: Command) -> tuple[subprocess.Popen[str], float]:
    process = subprocess.Popen(
        [str(SIGSHARE), *command.args],
        cwd=command.cwd,
        env=dict(command.env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        umask=command.umask,
    )
    return process, time.monotonic()


def finish(
    process: subprocess.Popen[str], started: float, watch: SecretWatch, timeout: float
) -> Outcome:
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        raise AssertionError(
            f"`{' '.join(cast('list[str]', process.args))}` still running after {timeout} s:"
            f"\n{stderr}"
        ) from None
    outcome = Outcome(
        args=("sigshare", *(str(a) for a in cast("list[str]", process.args)[1:])),
        returncode=process.returncode,
        stdout=stdout,
        stderr=stderr,
        seconds=time.monotonic() - started,
    )
    watch.check(stdout, f"{outcome.describe()} stdout")
    watch.check(stderr, f"{outcome.describe()} stderr")
    return outcome


def run(command: Command, watch: SecretWatch, timeout: float = COMMAND_TIMEOUT) -> Outcome:
    """Run ``sigshare ARGS`` to completion; its output is checked for secrets."""
    process, started = start(command)
    return finish(process, started, watch, timeout)


def run_all(
    commands: Sequence[Command], watch: SecretWatch, timeout: float = COMMAND_TIMEOUT
) -> list[Outcome]:
    """Run independent commands concurrently (they are mostly interpreter start-up)."""
    started = [start(command) for command in commands]
    outcomes: list[Outcome] = []
    failure: AssertionError | None = None
    for process, at in started:  # reap every process, even after a failure
        try:
            outcomes.append(finish(process, at, watch, timeout))
        except AssertionError as error:
            failure = failure or error
    if failure is not None:
        raise failure
    return outcomes


def hub_cli(url: str, *args: str) -> str:
    """``sigshare-hub --db URL ARGS`` through its click group, in process; returns stdout."""
    result = CliRunner().invoke(hub_cli_group, ["--db", url, *args], catch_exceptions=False)
    assert result.exit_code == 0, f"sigshare-hub {' '.join(args)}: {result.output}"
    return result.stdout


# ---------------------------------------------------------------------------------- files


def write_private(path: Path, text: str) -> Path:
    """A file with mode 0600, as a member keeps credentials and configuration."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(path, 0o600)
    return path


def write_config(
    path: Path,
    *,
    hub: str,
    credential_file: Path,
    secret_file: Path,
    state_dir: Path,
    retries: int = 1,
    timeout_seconds: float = 10.0,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """A member configuration as `sigshare init` writes it (flat TOML, mode 0600)."""
    settings: dict[str, Any] = {
        "version": 1,
        "hub": hub,
        "insecure": True,
        "credential_file": str(credential_file),
        "secret_file": str(secret_file),
        "state_dir": str(state_dir),
        "retries": retries,
        "timeout_seconds": float(timeout_seconds),
        **(extra or {}),
    }
    lines = [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    return write_private(path, "\n".join(lines) + "\n")


def write_indicator_csv(path: Path, rows: Iterable[tuple[str, str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["kind", "value", "category"])
        writer.writerows(rows)
    return path


def write_prompts(path: Path, prompts: Iterable[str], category: str = "distillation") -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for text in prompts:
            handle.write(json.dumps({"text": text, "category": category}) + "\n")
    return path


def write_firm_inputs(firm: FirmData, directory: Path) -> tuple[Path, Path]:
    """The firm's pipeline exports: indicator CSV (bad rows included) and prompt JSONL."""
    indicators = write_indicator_csv(
        directory / f"{firm.name}.csv",
        (
            (kind, value, "extraction")
            for kind, values in firm.indicators.items()
            for value in values
        ),
    )
    prompts = write_prompts(directory / f"{firm.name}.prompts.jsonl", firm.prompts)
    return indicators, prompts


# ---------------------------------------------------------------------------------- truth


def canonical(kind: str, value: str) -> str:
    return get_kind(kind).canonicalise(value)


def planned_holdings(forum: SyntheticForum) -> list[dict[str, dict[str, frozenset[int]]]]:
    """Per firm, per kind: canonical value → the firms that hold it, from the forum's plan."""
    holdings: list[dict[str, dict[str, frozenset[int]]]] = [
        {kind: {} for kind in PLANNED_VALUE} for _ in forum.firms
    ]
    for account, owners in forum.account_holders.items():
        for kind, planned in PLANNED_VALUE.items():
            value = canonical(kind, planned(account))
            for firm in owners:
                holdings[firm][kind][value] = owners
    return holdings


def prompt_labels(firm: FirmData) -> dict[str, int]:
    """Prompt text → its campaign index (−1: organic traffic)."""
    labels: dict[str, int] = {}
    for text, label in zip(firm.prompts, firm.prompt_campaign, strict=True):
        labels.setdefault(text, label)
    return labels


def own_filter(secret: ForumSecret, params: BloomParams, values: Iterable[str]) -> KeyedBloomFilter:
    """The filter a member builds from its canonical ``values``, as its sync job does."""
    bloom = KeyedBloomFilter(params, KeyedPRF(secret.derive(KeyPurpose.BLOOM_TOKEN, params.kind)))
    bloom.add(sorted(values))
    return bloom


def filter_fpr(secret: ForumSecret, params: BloomParams, values: Iterable[str]) -> float:
    """The false-positive rate of the member's own filter of ``values`` at its fill: the
    probability that a value the member does not hold has all ``k`` positions set in it."""
    bloom = own_filter(secret, params, values)
    return params.fpr_at_fill(bloom.fill())
