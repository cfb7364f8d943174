"""Load: many concurrent member syncs against two hub replicas sharing one PostgreSQL database.

Two ``sigshare-hub serve`` processes (real concurrency, one interpreter each) serve one fresh
PostgreSQL database on 127.0.0.1; members alternate between them. Every member runs the
installed ``sigshare sync --json`` as its own process — 20,000 e-mail indicators with planned
overlaps and a small prompt file — all started at once; then every member runs ``sigshare pull
--json`` again, concurrently, once all submissions are in. Measured: errors (non-zero exits),
per-member push and pull latency percentiles, wall time, throughput, and correctness — each
member's shared indicators against the exact oracle of the plan, every member holding exactly
one active submission per kind, and both replicas returning identical resolutions for a sample
of members.

The server comes from ``--pg URL`` / ``SIGSHARE_BENCH_PG`` (as for the hub benchmarks); without
it the benchmark is skipped with a message. Full: 50 members; quick: 10.

The plan, for N members: each holds 9,500 addresses of its own, 500 "hot" addresses every member
holds, and two 5,000-address blocks of a ring (member i holds blocks i and i+1), so every block
address has exactly one other holder. Bloom capacity is twice the forum's distinct addresses, so
the false-positive chance of a resolution is ~1e-7 per address and the oracle is exact.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from sigshare.client.config import ClientConfig, write_config
from sigshare.client.hub_client import HubClient, HubConnection
from sigshare.client.state import LocalState
from sigshare.client.synthetic import CAMPAIGN_TEMPLATES, WORDS
from sigshare.hub.domain import Role
from sigshare.hub.services import parameters, principals
from sigshare.hub.storage import (
    PrincipalRepository,
    SubmissionRepository,
    make_engine,
    migrate,
    session_scope,
)
from sigshare.sketch.keys import ForumSecret, write_secret_file
from sigshare.sketch.kinds import get_kind

KEY_ID = "load-1"
PG_ENV = "SIGSHARE_BENCH_PG"
OWN = 9_500
HOT = 500
BLOCK = 5_000
TARGET_FPR = 1e-4
PROMPTS = 24
REPLICAS = 2
SAMPLE = 6
"""Members whose resolutions are downloaded from both replicas and compared."""
START_TIMEOUT = 60.0
COMMAND_TIMEOUT = 900.0
BIN = Path(sys.executable).parent


def _email(tag: str, index: int) -> str:
    return f"{tag}{index:06d}@Load{index % 89}.example.org"


def member_emails(member: int, members: int) -> tuple[list[str], dict[str, int]]:
    """The member's addresses, and the oracle: canonical address → other holders (≥ 1 only)."""
    own = [_email(f"own{member:03d}x", i) for i in range(OWN)]
    hot = [_email("hot", i) for i in range(HOT)]
    blocks = [
        _email(f"blk{block:03d}x", i)
        for block in (member, (member + 1) % members)
        for i in range(BLOCK)
    ]
    canonicalise = get_kind("email").canonicalise
    truth = {canonicalise(value): members - 1 for value in hot}
    truth.update({canonicalise(value): 1 for value in blocks})
    return own + hot + blocks, truth


def _write_inputs(directory: Path, member: int, members: int) -> tuple[Path, Path, dict[str, int]]:
    values, truth = member_emails(member, members)
    csv_path = directory / "indicators.csv"
    with csv_path.open("w", encoding="utf-8") as handle:
        handle.write("kind,value,category\n")
        handle.writelines(f"email,{value},distillation\n" for value in values)
    rng = random.Random(member)
    template = CAMPAIGN_TEMPLATES[0]
    lines = []
    for index in range(PROMPTS):
        if index % 2:
            text = template.format(subject="chemistry", slot=" ".join(rng.choices(WORDS, k=10)))
        else:
            text = " ".join(rng.choices(WORDS, k=rng.randint(12, 30))) + "?"
        lines.append(json.dumps({"text": text, "category": "distillation"}) + "\n")
    prompts_path = directory / "prompts.jsonl"
    prompts_path.write_text("".join(lines), encoding="utf-8")
    return csv_path, prompts_path, truth


@contextmanager
def _database(server_url: str) -> Iterator[str]:
    """A fresh database on the server, dropped (connections and all) afterwards."""
    server = make_url(server_url)
    name = f"sigshare_load_{os.getpid()}_{int(time.time())}"
    admin = create_engine(server, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            yield server.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


@contextmanager
def _replicas(url: str, directory: Path, count: int) -> Iterator[list[int]]:
    """``count`` ``sigshare-hub serve`` processes on one database; their ports."""
    processes: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        for index in range(count):
            port_file = directory / f"replica-{index}.port"
            log = (directory / f"replica-{index}.log").open("wb")
            process = subprocess.Popen(
                [
                    str(BIN / "sigshare-hub"),
                    "--db",
                    url,
                    "serve",
                    "--listen",
                    "127.0.0.1:0",
                    "--insecure",
                    "--port-file",
                    str(port_file),
                    "--log-level",
                    "warning",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            log.close()
            processes.append((process, port_file))
        ports = []
        deadline = time.monotonic() + START_TIMEOUT
        for process, port_file in processes:
            while not (port_file.exists() and port_file.read_text().strip()):
                if process.poll() is not None or time.monotonic() > deadline:
                    log_text = port_file.with_suffix(".log").read_text(errors="replace")
                    raise RuntimeError(f"hub replica did not start:\n{log_text}")
                time.sleep(0.05)
            ports.append(int(port_file.read_text()))
        yield ports
    finally:
        for process, _ in processes:
            process.terminate()
        for process, _ in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def _run(command: list[str]) -> Run:
    started = time.perf_counter()
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            check=False,
            text=True,
            timeout=COMMAND_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as error:
        return Run(-1, "", f"timed out: {error}", time.perf_counter() - started)
    return Run(done.returncode, done.stdout, done.stderr, time.perf_counter() - started)


def _concurrently(commands: list[list[str]]) -> tuple[list[Run], float]:
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(commands)) as pool:
        runs = list(pool.map(_run, commands))
    return runs, time.perf_counter() - started


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}
    array = np.asarray(values, dtype=float)
    return {
        "p50": round(float(np.percentile(array, 50)), 2),
        "p95": round(float(np.percentile(array, 95)), 2),
        "p99": round(float(np.percentile(array, 99)), 2),
        "max": round(float(array.max()), 2),
    }


def bench_load(*, quick: bool) -> dict[str, Any]:
    members = 10 if quick else 50
    server_url = os.environ.get(PG_ENV)
    if not server_url:
        message = f"skipped: needs PostgreSQL (--pg URL or ${PG_ENV})"
        print(f"load: {message}", file=sys.stderr)
        return {"skipped": message, "members": members}
    distinct = members * (OWN + BLOCK) + HOT
    capacity = 2 * distinct
    with (
        tempfile.TemporaryDirectory(prefix="sigshare-load-bench-") as temporary,
        _database(server_url) as url,
    ):
        directory = Path(temporary)
        engine = make_engine(url)
        try:
            migrate.upgrade(engine)
            now = datetime.now(UTC)
            names = [f"load{index:02d}" for index in range(members)]
            credentials: dict[str, str] = {}
            with session_scope(engine) as session:
                parameters.set_kind_parameters(
                    session,
                    actor="bench",
                    kind="email",
                    key_id=KEY_ID,
                    capacity=capacity,
                    target_fpr=TARGET_FPR,
                    quorum=2,
                    now=now,
                )
                parameters.set_minhash_parameters(
                    session, actor="bench", family="prompt", key_id=KEY_ID, threshold=0.5, now=now
                )
                for name in names:
                    _, issued = principals.add_principal(
                        session, actor="bench", name=name, role=Role.MEMBER, now=now
                    )
                    credentials[name] = issued.token
            secret_file = directory / "forum.secret"
            write_secret_file(secret_file, ForumSecret.generate(KEY_ID))
            with _replicas(url, directory, REPLICAS) as ports:
                configs: list[Path] = []
                inputs: list[tuple[Path, Path]] = []
                truths: list[dict[str, int]] = []
                states: list[Path] = []
                for index, name in enumerate(names):
                    home = directory / name
                    home.mkdir(mode=0o700)
                    credential = home / "credential"
                    credential.write_text(credentials[name])
                    credential.chmod(0o600)
                    config = ClientConfig(
                        hub=f"127.0.0.1:{ports[index % REPLICAS]}",
                        credential_file=credential,
                        secret_file=secret_file,
                        state_dir=home / "state",
                        insecure=True,
                        timeout_seconds=600,
                    )
                    write_config(home / "config.toml", config)
                    csv_path, prompts_path, truth = _write_inputs(home, index, members)
                    configs.append(home / "config.toml")
                    inputs.append((csv_path, prompts_path))
                    truths.append(truth)
                    states.append(home / "state")
                sigshare = str(BIN / "sigshare")
                sync_runs, sync_wall = _concurrently(
                    [
                        [sigshare, "sync", "--json", "--config", str(config), str(csv), str(jsonl)]
                        for config, (csv, jsonl) in zip(configs, inputs, strict=True)
                    ]
                )
                pull_runs, pull_wall = _concurrently(
                    [[sigshare, "pull", "--json", "--config", str(config)] for config in configs]
                )
                replicas_identical, compared = _compare_replicas(
                    ports, [credentials[name] for name in names[:SAMPLE]]
                )
        finally:
            engine.dispose()
        failures = [
            f"{names[i]} {what}: exit {run.returncode}: {run.stderr.strip()[-400:]}"
            for what, runs in (("sync", sync_runs), ("pull", pull_runs))
            for i, run in enumerate(runs)
            if run.returncode != 0
        ]
        push_seconds: list[float] = []
        resolve_seconds: list[float] = []
        for run in sync_runs:
            if run.returncode == 0:
                phases = json.loads(run.stdout)["phases"]
                resolve_seconds.append(float(phases.get("resolve", 0.0)))
                push_seconds.append(sum(v for k, v in phases.items() if k != "resolve"))
        exact_members, missing, extra = 0, 0, 0
        for state_dir, truth in zip(states, truths, strict=True):
            with LocalState.open(state_dir) as state:
                found = {item.canonical: item.others for item in state.resolved("email")}
            missing += sum(1 for key, others in truth.items() if found.get(key) != others)
            extra += sum(1 for key in found if key not in truth)
            exact_members += found == truth
        active_ok = _one_active_per_kind(url, names)
    rows = members * (OWN + HOT + 2 * BLOCK)
    return {
        "members": members,
        "replicas": REPLICAS,
        "indicators_per_member": OWN + HOT + 2 * BLOCK,
        "prompts_per_member": PROMPTS,
        "capacity": capacity,
        "errors": len(failures),
        "failures": failures[:5],
        "sync_wall_seconds": round(sync_wall, 2),
        "pull_wall_seconds": round(pull_wall, 2),
        "sync_process_seconds": _percentiles([r.seconds for r in sync_runs]),
        "push_seconds": _percentiles(push_seconds),
        "pull_in_sync_seconds": _percentiles(resolve_seconds),
        "pull_process_seconds": _percentiles([r.seconds for r in pull_runs]),
        "syncs_per_second": round(members / sync_wall, 2),
        "indicator_rows_per_second": round(rows / sync_wall),
        "exact_members": exact_members,
        "oracle_mismatches": missing,
        "false_positives": extra,
        "one_active_per_kind": active_ok,
        "replicas_identical": replicas_identical,
        "replica_sample": compared,
    }


def _compare_replicas(ports: list[int], credentials: list[str]) -> tuple[bool, int]:
    """Download the same members' resolutions from every replica; whether all agree."""
    identical = True
    for credential in credentials:
        seen = []
        for port in ports:
            with HubClient(
                HubConnection(target=f"127.0.0.1:{port}", credential=credential, insecure=True)
            ) as client:
                resolution = client.download_resolution("email", KEY_ID)
            seen.append((resolution.members, resolution.counts))
        first_members, first_counts = seen[0]
        identical &= all(
            members == first_members and np.array_equal(counts, first_counts)
            for members, counts in seen[1:]
        )
    return identical, len(credentials)


def _one_active_per_kind(url: str, names: list[str]) -> bool:
    engine = make_engine(url)
    try:
        with session_scope(engine) as session:
            for name in names:
                principal = PrincipalRepository(session).get_by_name(name)
                assert principal is not None
                active = SubmissionRepository(session).of_member(principal.id)
                kinds = sorted(s.family_kind for s in active if s.status.value == "active")
                if kinds != ["email", "minhash:prompt"]:
                    return False
    finally:
        engine.dispose()
    return True


BENCHMARKS = {"load": bench_load}


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    result = results.get("load")
    if not result or "skipped" in result or result["members"] < 50:
        return []
    correct = (
        result["exact_members"] == result["members"]
        and result["one_active_per_kind"]
        and result["replicas_identical"]
    )
    return [
        {
            "goal": (
                f"{result['members']} concurrent syncs on {result['replicas']} replicas: errors"
            ),
            "measured": result["errors"],
            "target": "= 0",
            "met": result["errors"] == 0,
        },
        {
            "goal": "load: every member's shared indicators equal the oracle",
            "measured": result["exact_members"],
            "target": f"= {result['members']} (all)",
            "met": correct,
        },
    ]


def print_table(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    result = results.get("load")
    if not result:
        return
    if "skipped" in result:
        Console().print(f"load: {result['skipped']}")
        return
    r = result
    table = Table(
        title=(
            f"load: {r['members']} concurrent member syncs, {r['replicas']} hub replicas, "
            f"one PostgreSQL ({r['indicators_per_member']:,} e-mails + "
            f"{r['prompts_per_member']} prompts each)"
        ),
        title_justify="left",
    )
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("errors (sync + pull)", str(r["errors"]))
    table.add_row("wall, all syncs", f"{r['sync_wall_seconds']:.1f} s")
    table.add_row("wall, second round of pulls", f"{r['pull_wall_seconds']:.1f} s")
    table.add_row("throughput", f"{r['syncs_per_second']:.2f} syncs/s")
    table.add_row("indicator rows", f"{r['indicator_rows_per_second']:,} rows/s")
    for label, key in (
        ("push per member", "push_seconds"),
        ("pull inside sync", "pull_in_sync_seconds"),
        ("sync process", "sync_process_seconds"),
        ("pull process (round 2)", "pull_process_seconds"),
    ):
        p = r[key]
        table.add_row(
            f"{label} p50 / p95 / p99 / max",
            f"{p['p50']:.2f} / {p['p95']:.2f} / {p['p99']:.2f} / {p['max']:.2f} s",
        )
    table.add_row("members equal to the oracle", f"{r['exact_members']} / {r['members']}")
    table.add_row(
        "oracle mismatches / false positives", f"{r['oracle_mismatches']} / {r['false_positives']}"
    )
    table.add_row("one active submission per kind", "yes" if r["one_active_per_kind"] else "NO")
    table.add_row(
        f"replicas identical ({r['replica_sample']} members sampled)",
        "yes" if r["replicas_identical"] else "NO",
    )
    Console().print(table)
