"""``sigshare push|pull|sync|matches|confirm|status``: the member's side of the forum.

Each command loads the configuration, takes the state directory's lock (one run at a time),
and leaves through the one error table of :mod:`sigshare.client.cli.errors`: configuration 3,
authentication 4, unreadable input 5, network 6, hub rejection 7. Human output is one summary
line (plus tables for ``matches`` and ``status``); ``--json`` prints one JSON object instead.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from sigshare.client.cli.errors import HANDLED, fail
from sigshare.client.config import (
    ClientConfig,
    ConfigError,
    hub_connection,
    load_config,
    retry_policy,
    timeouts,
)
from sigshare.client.console import Console
from sigshare.client.errors import HubClientError
from sigshare.client.exit_codes import ExitCode
from sigshare.client.hub_client import HubClient
from sigshare.client.inputs import RejectSink
from sigshare.client.state import LocalState, StateError
from sigshare.client.sync import (
    PullReport,
    PushReport,
    RunLock,
    SyncJob,
    classify_inputs,
)
from sigshare.sketch.keys import load_secret_file

from .options import config_option, json_option


@dataclass
class _Run:
    """What one command run works with: configuration, local state, sync job, hub client."""

    config: ClientConfig
    state: LocalState
    job: SyncJob
    client: HubClient


@contextmanager
def _running(
    console: Console, config_file: Path | None, command: str, *, wait: bool = False
) -> Iterator[_Run]:
    """Configuration, lock, state, secret and hub client for one command; errors → exit codes."""
    try:
        config, _ = load_config(config_file)
        config.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with RunLock(config.state_dir, wait=wait), LocalState.open(config.state_dir) as state:
            secret = load_secret_file(config.secret_file)
            client = HubClient(
                hub_connection(config), retry=retry_policy(config), timeouts=timeouts(config)
            )
            with client:
                job = SyncJob(
                    client=client,
                    state=state,
                    secret=secret,
                    progress=console.progress,
                    prompt_family=config.prompt_family,
                    min_cluster_volume=config.min_cluster_volume,
                )
                run = state.start_run(command, datetime.now(UTC))
                try:
                    yield _Run(config, state, job, client)
                except BaseException as error:
                    state.finish_run(run, type(error).__name__, "{}", datetime.now(UTC))
                    raise
                state.finish_run(run, "ok", "{}", datetime.now(UTC))
    except HANDLED as error:
        fail(console, error)


def _push_document(report: PushReport, rejects_file: Path | None) -> dict[str, Any]:
    return {
        "rows": report.rows,
        "rejected": report.rejected,
        "rejects": dict(sorted(report.rejects.items())),
        "rejects_file": str(rejects_file) if rejects_file and report.rejected else None,
        "submissions": [
            {
                "name": kind.name,
                "items": kind.items,
                "submission_id": kind.submission_id,
                "unchanged": kind.duplicate,
                "bytes": kind.bytes,
            }
            for kind in report.kinds
        ],
    }


def _pull_document(report: PullReport) -> dict[str, Any]:
    return {
        "shared_indicators": report.shared_indicators,
        "campaigns": report.campaigns,
        "campaign_clusters": report.campaign_clusters,
        "over_budget": report.over_budget,
        "budget_frees_at": {
            kind: None if moment is None else moment.isoformat()
            for kind, moment in report.budget_frees_at.items()
        },
        "not_held": report.not_held,
    }


def _push_line(report: PushReport) -> str:
    parts = [
        f"{kind.name} {kind.items:,}{' (unchanged)' if kind.duplicate else ''}"
        for kind in report.kinds
    ]
    text = "pushed " + (", ".join(parts) if parts else "nothing")
    if report.rejected:
        reasons = ", ".join(f"{reason} {count:,}" for reason, count in report.rejects.most_common())
        text += f"; {report.rejected:,} rows rejected ({reasons})"
    return text


def _pull_line(report: PullReport) -> str:
    shared = sum(report.shared_indicators.values())
    return f"{shared:,} shared indicators, {report.campaigns:,} campaigns"


def _warn_unanswered(console: Console, report: PullReport) -> None:
    """Tell the member about values the hub did not answer this time (never silently)."""
    if console.json_output:
        return
    for kind, count in sorted(report.over_budget.items()):
        frees = report.budget_frees_at.get(kind)
        when = f" after {frees.isoformat(timespec='minutes')}" if frees else ""
        console.warn(
            f"{kind}: the hub's query budget is spent: {count:,} values were not answered "
            f"this time (earlier answers kept); the next pull{when} asks again"
        )
    for kind, count in sorted(report.not_held.items()):
        console.warn(
            f"{kind}: the hub's copy of your filter does not hold {count:,} of your values: "
            "run `sigshare push` (or `sync` with your files) to send the current filter"
        )


def _run_push(run: _Run, files: Sequence[Path], kind: str | None, console: Console) -> PushReport:
    indicator_files, prompt_files = classify_inputs(files)
    rejects_file = run.config.rejects_path
    rejects_file.unlink(missing_ok=True)  # one run's rejects, not an ever-growing log
    with RejectSink(rejects_file) as rejects:
        report = run.job.push(indicator_files, prompt_files, rejects=rejects, default_kind=kind)
    if not report.rejected:
        rejects_file.unlink(missing_ok=True)
    elif not console.json_output:
        console.warn(f"{report.rejected:,} rows rejected; details in {rejects_file}")
    return report


files_argument = click.argument(
    "files", nargs=-1, type=click.Path(dir_okay=False, path_type=Path)
)  # a missing file is an input problem (exit 5), reported by the readers, not a usage error
kind_option = click.option(
    "--kind", default=None, help="Indicator kind of every row (the `kind` column may be omitted)."
)


@click.command()
@files_argument
@kind_option
@config_option
@json_option
def push(
    files: tuple[Path, ...], kind: str | None, config_file: Path | None, json_output: bool
) -> None:
    """Sketch FILES (indicator CSV/JSONL, prompt JSONL) and submit the sketches to the hub."""
    console = Console(json_output=json_output)
    if not files:
        console.abort("give at least one input file", ExitCode.USAGE)
    started = time.perf_counter()
    with _running(console, config_file, "push") as run:
        report = _run_push(run, files, kind, console)
        rejects = run.config.rejects_path
    document = _push_document(report, rejects)
    document["seconds"] = round(time.perf_counter() - started, 2)
    _emit(console, document, f"{_push_line(report)} ({document['seconds']} s)")


@click.command()
@config_option
@json_option
def pull(config_file: Path | None, json_output: bool) -> None:
    """Ask the hub which of this member's own values other members hold, and fetch its
    campaign matches."""
    console = Console(json_output=json_output)
    started = time.perf_counter()
    with _running(console, config_file, "pull") as run:
        report = run.job.pull()
    _warn_unanswered(console, report)
    document = _pull_document(report)
    document["seconds"] = round(time.perf_counter() - started, 2)
    _emit(console, document, f"pulled: {_pull_line(report)} ({document['seconds']} s)")


@click.command()
@files_argument
@kind_option
@click.option("--wait", is_flag=True, help="Wait for a running sync instead of exiting.")
@config_option
@json_option
def sync(
    *,
    files: tuple[Path, ...],
    kind: str | None,
    wait: bool,
    config_file: Path | None,
    json_output: bool,
) -> None:
    """The nightly job: push FILES (if any), then pull and resolve. Safe to re-run."""
    console = Console(json_output=json_output)
    started = time.perf_counter()
    with _running(console, config_file, "sync", wait=wait) as run:
        pushed = _run_push(run, files, kind, console) if files else PushReport()
        pulled = run.job.pull()
        timings = dict(run.job.timer.seconds)
        rejects = run.config.rejects_path
    _warn_unanswered(console, pulled)
    document = {
        "push": _push_document(pushed, rejects),
        "pull": _pull_document(pulled),
        "phases": {name: round(seconds, 3) for name, seconds in timings.items()},
        "seconds": round(time.perf_counter() - started, 2),
    }
    line = f"sync: {_push_line(pushed)}; {_pull_line(pulled)} ({document['seconds']} s)"
    _emit(console, document, line)


@click.command()
@click.option("--kind", default=None, help="Only this indicator kind.")
@config_option
@json_option
def matches(kind: str | None, config_file: Path | None, json_output: bool) -> None:
    """Show this member's own values and prompt campaigns that other members hold too."""
    console = Console(json_output=json_output)
    try:
        config, _ = load_config(config_file)
        with LocalState.open(config.state_dir) as state:
            indicators = state.resolved(kind)
            campaigns = [] if kind else state.campaign_matches()
    except (ConfigError, StateError) as error:
        fail(console, error)
    document = {
        "indicators": [
            {
                "kind": item.kind,
                "value": item.value,
                "category": item.category,
                "other_members": item.others,
            }
            for item in indicators
        ],
        "campaigns": [
            {
                "cluster": match.cluster_id,
                "similarity": round(match.similarity, 4),
                "other_members": match.other_members,
                "prompts": list(match.prompts),
            }
            for match in campaigns
        ],
    }
    if json_output:
        console.emit_json(document)
        return
    console.table(
        "shared indicators (your values other members hold too)",
        ["kind", "value", "category", "other members"],
        [
            [i.kind, i.value, i.category or "-", ", ".join(i.other_names) or str(i.others)]
            for i in indicators
        ],
    )
    console.table(
        "shared campaigns (your prompt clusters other members see too)",
        ["cluster", "similarity", "other members", "prompts", "example"],
        [
            [
                m.cluster_id[:12],
                f"{m.similarity:.2f}",
                ", ".join(m.other_member_names) or str(m.other_members),
                str(len(m.prompts)),
                (m.prompts[0][:60] + "…")
                if m.prompts and len(m.prompts[0]) > 60
                else (m.prompts[0] if m.prompts else ""),
            ]
            for m in campaigns
        ],
    )


@click.command()
@click.option("--kind", default=None, help="Only items of this kind.")
@click.option("--category", default=None, help="Only items with this category.")
@click.option("--value", "values", multiple=True, help="Only these values (repeatable).")
@click.option("--all", "everything", is_flag=True, help="Every resolved item (after filters).")
@config_option
@json_option
def confirm(
    *,
    kind: str | None,
    category: str | None,
    values: tuple[str, ...],
    everything: bool,
    config_file: Path | None,
    json_output: bool,
) -> None:
    """Confirm resolved matches to the hub (their tokens, never the values).

    Tokens confirmed by at least quorum members become shared indicators that forum
    coordinators review. Choose items with --value, --kind and --category, or --all.
    """
    console = Console(json_output=json_output)
    if not (values or everything):
        console.abort("choose items with --value (repeatable) or confirm --all", ExitCode.USAGE)
    with _running(console, config_file, "confirm") as run:
        chosen = [
            item
            for item in run.state.resolved(kind)
            if (category is None or item.category == category)
            and (not values or item.value in values or item.canonical in values)
        ]
        results = run.job.confirm(chosen)
    document = {
        kind_name: {
            "accepted": r.accepted,
            "shared": r.shared,
            "not_resolved": r.not_resolved,
            "over_budget": r.over_budget,
        }
        for kind_name, r in results.items()
    }
    accepted = sum(r.accepted for r in results.values())
    shared = sum(r.shared for r in results.values())
    over_budget = sum(r.over_budget for r in results.values())
    refused = sum(r.not_resolved for r in results.values()) - over_budget
    line = (
        f"confirmed {accepted:,} of {len(chosen):,} chosen items; {shared:,} are shared "
        f"indicators now; {refused:,} no longer resolved"
    )
    if over_budget:
        line += f"; {over_budget:,} not answered (query budget spent: try again later)"
    _emit(console, {"kinds": document, "chosen": len(chosen)}, line)


@click.command()
@config_option
@json_option
def status(config_file: Path | None, json_output: bool) -> None:
    """This member's submissions as the hub sees them, and the last local runs."""
    console = Console(json_output=json_output)
    try:  # read-only: no lock, so it answers while a sync runs
        config, _ = load_config(config_file)
        with (
            LocalState.open(config.state_dir) as state,
            HubClient(
                hub_connection(config), retry=retry_policy(config), timeouts=timeouts(config)
            ) as client,
        ):
            member, submissions = client.status()
            runs = state.last_runs()
    except (ConfigError, StateError, HubClientError) as error:
        fail(console, error)
    document = {
        "member": member,
        "submissions": [
            {
                "kind": s.kind,
                "id": s.id,
                "items": s.declared_count,
                "bytes": s.byte_size,
                "status": s.status,
                "created_at": s.created_at.isoformat() if s.created_at else None,
                "expires_at": s.expires_at.isoformat() if s.expires_at else None,
                "fill": s.health.fill if s.health else None,
                "fpr_at_fill": s.health.fpr_at_fill if s.health else None,
            }
            for s in submissions
        ],
        "runs": [
            {"started_at": r[0], "finished_at": r[1], "command": r[2], "outcome": r[3]}
            for r in runs
        ],
    }
    if json_output:
        console.emit_json(document)
        return
    console.print(f"member {member}")
    console.table(
        "submissions",
        ["kind", "id", "items", "bytes", "fill", "FPR at fill", "expires"],
        [
            [
                s.kind,
                str(s.id),
                f"{s.declared_count:,}",
                f"{s.byte_size:,}",
                f"{s.health.fill:.3f}" if s.health else "-",
                f"{s.health.fpr_at_fill:.1e}" if s.health else "-",
                s.expires_at.strftime("%Y-%m-%d") if s.expires_at else "-",
            ]
            for s in submissions
        ],
    )
    console.table(
        "last local runs",
        ["started", "finished", "command", "outcome"],
        [[r[0][:19], (r[1] or "-")[:19], r[2], r[3] or "running"] for r in runs],
    )


def _emit(console: Console, document: dict[str, Any], line: str) -> None:
    if console.json_output:
        console.emit_json(json.loads(json.dumps(document, default=str)))
    else:
        console.out.print(line, markup=False, highlight=False)
