"""``sigshare push|pull|sync|matches|confirm|status`` and ``sigshare keys fetch``: the member's
side of the forum.

Each command loads the configuration, takes the state directory's lock (one run at a time),
and leaves through the one error table of :mod:`sigshare.client.cli.errors`: configuration 3,
authentication 4, unreadable input 5, network 6, hub rejection 7. A push, pull or sync that
skipped a kind or family but did the rest prints its summary and exits 8 (partial); so does a
sync or ``keys fetch`` that refused a sealed forum secret. Human output is one summary line
(plus tables for ``matches`` and ``status``, and a line per forum secret a sync installed);
``--json`` prints one JSON object instead.
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
from rich.markup import escape

from sigshare.client.cli.errors import HANDLED, fail
from sigshare.client.config import (
    ClientConfig,
    ConfigError,
    hub_client,
    load_config,
)
from sigshare.client.console import Console
from sigshare.client.errors import HubClientError, HubUnavailableError
from sigshare.client.exit_codes import ExitCode
from sigshare.client.hub_client import HubClient
from sigshare.client.hub_types import FORUM_STATUSES, SubmissionInfoView
from sigshare.client.inputs import RejectSink
from sigshare.client.sealed_keys import (
    NotSetUpError,
    PickupReport,
    keys_dir,
    not_set_up_reason,
    pick_up_envelopes,
)
from sigshare.client.secret_ring import SecretRing
from sigshare.client.state import ForumVerdict, LocalState, StateError
from sigshare.client.sync import (
    AHEAD_SEPARATOR,
    NothingAcceptedError,
    PullReport,
    PushReport,
    RunLock,
    Skipped,
    SyncJob,
    classify_inputs,
)

from .options import config_option, json_option


@dataclass
class _Run:
    """What one command run works with: configuration, local state, sync job, hub client."""

    config: ClientConfig
    state: LocalState
    job: SyncJob
    client: HubClient
    outcome: str = "ok"
    """Recorded in the state's run log when the command ends without an error."""


@contextmanager
def _running(
    console: Console, config_file: Path | None, command: str, *, wait: bool = False
) -> Iterator[_Run]:
    """Configuration, lock, state, secret and hub client for one command; errors → exit codes."""
    try:
        config, _ = load_config(config_file)
        config.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with RunLock(config.state_dir, wait=wait), LocalState.open(config.state_dir) as state:
            ring = SecretRing.load(config.secret_file)
            client = hub_client(config)
            with client:
                job = SyncJob(
                    client=client,
                    state=state,
                    secret=ring,
                    progress=console.progress,
                    prompt_family=config.prompt_family,
                    min_cluster_volume=config.min_cluster_volume,
                )
                run_id = state.start_run(command, datetime.now(UTC))
                run = _Run(config, state, job, client)
                try:
                    yield run
                except BaseException as error:
                    state.finish_run(run_id, type(error).__name__, "{}", datetime.now(UTC))
                    raise
                state.finish_run(run_id, run.outcome, "{}", datetime.now(UTC))
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
        "ahead": {
            "key_id": report.ahead_key_id,
            "submissions": [
                {
                    "name": kind.name,
                    "items": kind.items,
                    "submission_id": kind.submission_id,
                    "unchanged": kind.duplicate,
                    "bytes": kind.bytes,
                }
                for kind in report.ahead
            ],
        },
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


def _skipped_document(skipped: Sequence[Skipped]) -> list[dict[str, str]]:
    return [{s.subject: s.name, "reason": s.reason.value, "message": s.message} for s in skipped]


def _skipped_part(skipped: Sequence[Skipped]) -> str:
    return "; skipped " + ", ".join(f"{s.subject} {s.name} ({s.reason})" for s in skipped)


def _push_line(report: PushReport) -> str:
    parts = [
        f"{kind.name} {kind.items:,}{' (unchanged)' if kind.duplicate else ''}"
        for kind in report.kinds
    ]
    text = "pushed " + (", ".join(parts) if parts else "nothing")
    if report.ahead:
        ahead = ", ".join(
            f"{kind.name.split(AHEAD_SEPARATOR)[0]}{' (unchanged)' if kind.duplicate else ''}"
            for kind in report.ahead
        )
        text += f"; sent ahead under key epoch {report.ahead_key_id}: {ahead}"
    if report.rejected:
        reasons = ", ".join(f"{reason} {count:,}" for reason, count in report.rejects.most_common())
        text += f"; {report.rejected:,} rows rejected ({reasons})"
    if report.skipped:
        text += _skipped_part(report.skipped)
    return text


def _pull_line(report: PullReport) -> str:
    shared = sum(report.shared_indicators.values())
    text = f"{shared:,} shared indicators, {report.campaigns:,} campaigns"
    if report.skipped:
        text += _skipped_part(report.skipped)
    return text


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


def _outcome(run: _Run, skipped: Sequence[Skipped], refused: int = 0) -> dict[str, Any]:
    """A push, pull or sync's outcome, ``ok`` or ``partial`` (something skipped, or a sealed
    forum secret refused), as document fields; also what the run log records."""
    run.outcome = "partial" if skipped or refused else "ok"
    return {"outcome": run.outcome, "skipped": _skipped_document(skipped)}


def _emit_outcome(
    console: Console,
    document: dict[str, Any],
    line: str,
    skipped: Sequence[Skipped],
    refused: int = 0,
) -> None:
    """The summary of a push, pull or sync, a warning per skipped kind or family, and then
    exit 8 (partial) if any was skipped or a sealed forum secret refused."""
    if not console.json_output:
        for item in skipped:
            console.warn(f"skipped {item.subject} {item.name}: {item.message}")
    _emit(console, document, line)
    if skipped or refused:
        raise SystemExit(int(ExitCode.PARTIAL))


def _pick_up(console: Console, run: _Run) -> PickupReport:
    """Install the forum secrets sealed to this member since the last run (when member keys
    and a pinned custodian are set up), and say so: a line per installed secret, a warning per
    refused envelope, right away (a later failure of the run does not undo them)."""
    report = pick_up_envelopes(
        run.client, run.state, run.job.ring, keys_dir(run.config.state_dir), now=run.job.now()
    )
    if not console.json_output:
        for epoch in report.installed:
            activates = (
                f"switch planned for {epoch.activate_at.isoformat()}"
                if epoch.activate_at
                else "no switch time announced"
            )
            console.out.print(
                f"installed forum secret {epoch.key_id} (from custodian {epoch.custodian}, "
                f"{activates}) as {epoch.path}",
                markup=False,
                highlight=False,
            )
        for refusal in report.refused:
            console.warn(
                escape(
                    f"refused the sealed forum secret {refusal.key_id} (from custodian "
                    f"{refusal.custodian}): {refusal.message}"
                )
            )
    return report


def _keys_document(report: PickupReport) -> dict[str, Any]:
    return {
        "set_up": report.set_up,
        "note": report.note,
        "installed": [
            {
                "key_id": epoch.key_id,
                "custodian": epoch.custodian,
                "created_at": epoch.created_at.isoformat(),
                "activate_at": epoch.activate_at.isoformat() if epoch.activate_at else None,
                "path": str(epoch.path),
            }
            for epoch in report.installed
        ],
        "refused": [
            {
                "key_id": refusal.key_id,
                "custodian": refusal.custodian,
                "reason": refusal.reason,
                "message": refusal.message,
            }
            for refusal in report.refused
        ],
    }


def _refused_part(report: PickupReport) -> str:
    count = len(report.refused)
    return f"; refused {count} sealed forum secret{'s' if count > 1 else ''}" if count else ""


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
        if report.skipped and not report.kinds:
            raise NothingAcceptedError(report.skipped)
        rejects = run.config.rejects_path
        outcome = _outcome(run, report.skipped)
    document = {**_push_document(report, rejects), **outcome}
    document["seconds"] = round(time.perf_counter() - started, 2)
    line = f"{_push_line(report)} ({document['seconds']} s)"
    _emit_outcome(console, document, line, report.skipped)


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
        outcome = _outcome(run, report.skipped)
    _warn_unanswered(console, report)
    document = {**_pull_document(report), **outcome}
    document["seconds"] = round(time.perf_counter() - started, 2)
    line = f"pulled: {_pull_line(report)} ({document['seconds']} s)"
    _emit_outcome(console, document, line, report.skipped)


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
    """The nightly job: install new sealed forum secrets (once set up with `sigshare keys`),
    push FILES (if any), then pull and resolve. Safe to re-run."""
    console = Console(json_output=json_output)
    started = time.perf_counter()
    with _running(console, config_file, "sync", wait=wait) as run:
        picked = _pick_up(console, run)
        pushed = _run_push(run, files, kind, console) if files else PushReport()
        pulled = run.job.pull()
        timings = dict(run.job.timer.seconds)
        rejects = run.config.rejects_path
        skipped = [*pushed.skipped, *pulled.skipped]
        outcome = _outcome(run, skipped, len(picked.refused))
    _warn_unanswered(console, pulled)
    document = {
        "push": _push_document(pushed, rejects),
        "pull": _pull_document(pulled),
        "keys": _keys_document(picked),
        "phases": {name: round(seconds, 3) for name, seconds in timings.items()},
        **outcome,
        "seconds": round(time.perf_counter() - started, 2),
    }
    line = (
        f"sync: {_push_line(pushed)}; {_pull_line(pulled)}{_refused_part(picked)} "
        f"({document['seconds']} s)"
    )
    _emit_outcome(console, document, line, skipped, len(picked.refused))


@click.command("fetch")
@config_option
@json_option
def fetch_keys(config_file: Path | None, json_output: bool) -> None:
    """Install the forum secrets sealed to this member (what `sync` does first, alone).

    Needs member keys (`sigshare keys register`, approved by the forum's admin) and a pinned
    custodian (`sigshare keys trust`). Exits 8 if the hub sent an envelope that was refused.
    """
    console = Console(json_output=json_output)
    with _running(console, config_file, "keys fetch") as run:
        reason = not_set_up_reason(keys_dir(run.config.state_dir))
        if reason is not None:
            raise NotSetUpError(f"{reason}; nothing was fetched")
        picked = _pick_up(console, run)
        outcome = _outcome(run, (), len(picked.refused))
    document = {"keys": _keys_document(picked), "outcome": outcome["outcome"]}
    count = len(picked.installed)
    line = (
        f"installed {count} new forum secret{'s' if count > 1 else ''}"
        if count
        else "no new forum secret"
    ) + _refused_part(picked)
    _emit_outcome(console, document, line, (), len(picked.refused))


NOT_PULLED = "nothing pulled yet: run `sigshare sync` (or `sigshare pull`) first"


def _forum_fields(forum: ForumVerdict | None) -> dict[str, str | None]:
    """The forum's review of a match, for ``--json``: status and note for members, or nulls."""
    return {
        "forum_status": None if forum is None else forum.status,
        "forum_note": None if forum is None else forum.note,
    }


def _forum_cells(forum: ForumVerdict | None) -> list[str]:
    """The forum's review of a match, as table cells (the note is coordinators' text: shown
    literally)."""
    if forum is None:
        return ["-", "-"]
    return [forum.status, escape(forum.note) if forum.note else "-"]


@click.command()
@click.option("--kind", default=None, help="Only this indicator kind.")
@click.option(
    "--status",
    type=click.Choice(FORUM_STATUSES),
    default=None,
    help="Only matches the forum's coordinators gave this status (e.g. confirmed).",
)
@config_option
@json_option
def matches(
    kind: str | None, status: str | None, config_file: Path | None, json_output: bool
) -> None:
    """Show this member's own values and prompt campaigns that other members hold too, with
    the forum's review of those this member reported (status and note for members)."""
    console = Console(json_output=json_output)
    try:
        config, _ = load_config(config_file)
        with LocalState.open(config.state_dir) as state:
            indicators = state.resolved(kind)
            campaigns = [] if kind else state.campaign_matches()
            pulled = state.has_pulled()
    except (ConfigError, StateError) as error:
        fail(console, error)
    if status is not None:
        indicators = [i for i in indicators if i.forum is not None and i.forum.status == status]
        campaigns = [m for m in campaigns if m.forum is not None and m.forum.status == status]
    document = {
        "pulled": pulled,
        "indicators": [
            {
                "kind": item.kind,
                "value": item.value,
                "category": item.category,
                "other_members": item.others,
                **_forum_fields(item.forum),
            }
            for item in indicators
        ],
        "campaigns": [
            {
                "cluster": match.cluster_id,
                "similarity": round(match.similarity, 4),
                "other_members": match.other_members,
                "prompts": list(match.prompts),
                **_forum_fields(match.forum),
            }
            for match in campaigns
        ],
    }
    if json_output:
        console.emit_json(document)
        return
    if not pulled:
        console.print(NOT_PULLED)
        return
    if status is not None and not indicators and not campaigns:
        console.print(f"none of your matches has the forum status {status}")
        return
    console.table(
        "shared indicators (your values other members hold too)",
        ["kind", "value", "category", "other members", "forum", "forum note"],
        [
            [
                i.kind,
                i.value,
                i.category or "-",
                ", ".join(i.other_names) or str(i.others),
                *_forum_cells(i.forum),
            ]
            for i in indicators
        ],
    )
    console.table(
        "shared campaigns (your prompt clusters other members see too)",
        ["cluster", "similarity", "other members", "prompts", "example", "forum", "forum note"],
        [
            [
                m.cluster_id[:12],
                f"{m.similarity:.2f}",
                ", ".join(m.other_member_names) or str(m.other_members),
                str(len(m.prompts)),
                (m.prompts[0][:60] + "…")
                if m.prompts and len(m.prompts[0]) > 60
                else (m.prompts[0] if m.prompts else ""),
                *_forum_cells(m.forum),
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
        chosen = run.job.choose(kind=kind, category=category, values=values)
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
    """This member's submissions as the hub sees them, and the last local runs.

    When the hub cannot be reached, says so in one line and shows what the local state
    records (the last sketch of each kind and family, and the runs); the exit code stays 0.
    """
    console = Console(json_output=json_output)
    member: str | None = None
    submissions: list[SubmissionInfoView] = []
    unreachable: str | None = None
    try:  # read-only: no lock, so it answers while a sync runs
        config, _ = load_config(config_file)
        with LocalState.open(config.state_dir) as state:
            runs = state.last_runs()
            sketches = state.sketch_summaries()
        try:
            with hub_client(config) as client:
                member, submissions = client.status()
        except HubUnavailableError as error:
            unreachable = str(error)
    except (ConfigError, StateError, HubClientError) as error:
        fail(console, error)
    document = {
        "member": member,
        "hub_error": unreachable,
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
        "local_submissions": [
            {
                "name": sketch.name,
                "items": sketch.declared_count,
                "bytes": sketch.byte_size,
                "submission_id": sketch.submission_id,
                "built_at": sketch.built_at.isoformat(),
                "submitted_at": sketch.submitted_at.isoformat() if sketch.submitted_at else None,
            }
            for sketch in sketches
        ],
        "runs": [
            {"started_at": r[0], "finished_at": r[1], "command": r[2], "outcome": r[3]}
            for r in runs
        ],
    }
    if json_output:
        console.emit_json(document)
        return
    if unreachable is not None:
        console.warn(f"the hub could not be reached, showing local state only: {unreachable}")
        console.table(
            "last submissions (local record)",
            ["name", "id", "items", "bytes", "submitted"],
            [
                [
                    sketch.name,
                    "not accepted" if sketch.submission_id is None else str(sketch.submission_id),
                    f"{sketch.declared_count:,}",
                    f"{sketch.byte_size:,}",
                    sketch.submitted_at.isoformat()[:19] if sketch.submitted_at else "-",
                ]
                for sketch in sketches
            ],
        )
    else:
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
