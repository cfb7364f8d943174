"""Load: many concurrent member syncs against two hub replicas sharing one PostgreSQL database.

Two ``sigshare-hub serve`` processes (real concurrency, one interpreter each) serve one fresh
PostgreSQL database on 127.0.0.1; members alternate between them. Every member runs the
installed ``sigshare sync --json`` as its own process — 20,000 e-mail indicators with planned
overlaps and a small prompt file — all started at once; then every member runs ``sigshare pull
--json`` again, concurrently, once all submissions are in. Measured: errors (non-zero exits),
per-member push and pull latency percentiles, wall time, throughput, and correctness — each
member's shared indicators against the exact oracle of the plan, every member holding exactly
one active submission per kind, and both replicas giving identical ``Resolve`` answers (status
and other holders per token) for a sample of members.

Then a resolution round: every member calls ``HubClient.resolve`` for its own e-mail tokens
(read from its local state), all at once, half on each replica; the same round against one
replica only; and the same calls one at a time. Measured per round: wall time, per-call
latency percentiles and the concurrency achieved (Σ per-call durations / wall), each round the
best of :data:`ROUNDS`, and the ratios (one replica / two replicas; one at a time / two
replicas). During further two-replica rounds (not the timed ones), a separate connection
samples PostgreSQL's advisory locks in this database every 5 ms: answers take no family lock
when nothing is pending, so the only advisory lock expected is the audit chain's, held from a
request's audit append to its commit; the share of samples holding it shows how much of the
round that serial step takes. Concurrency alone cannot show parallelism (calls queued behind
one lock also overlap in time, giving about (N + 1)/2), so the goals are on the speed-up over
one-at-a-time calls and on the locks held. Every round's answers are checked against the
oracle too.

The server comes from ``--pg URL`` / ``SIGSHARE_BENCH_PG`` (as for the hub benchmarks); without
it the benchmark is skipped with a message. Full: 50 members; quick: 10.

The plan, for N members: each holds 9,500 addresses of its own, 500 "hot" addresses every member
holds, and two 5,000-address blocks of a ring (member i holds blocks i and i+1), so every block
address has exactly one other holder: 20,000 addresses per member. The forum publishes
``max_members = N``, ``forum_fpr = 1e-4`` and a capacity of twice a member's addresses, so each
filter is sized for the per-filter rate 1e-4/(N − 1) at 40,000 items and holds half that. A
value is answered wrongly only when a filter of a member *not* holding it gives a false
positive: its rate at half load is ``fill^k``-like (:meth:`BloomParams.fpr_at_fill` of the
expected fill) — 2.0e-9 for N = 10 (m = 949,760, k = 16) and 8.0e-11 for N = 50 (m = 1,090,880,
k = 19) — and the forum asks about N·(9,500·(N − 1) + 10,000·(N − 2)) such (value, filter) pairs, so
the expected number of false positives among the answers once every filter is in (the second
pull and every resolution round; an answer does not change when asked again) is 3.3e-3
(N = 10) and 3.8e-3 (N = 50): the oracle is exact. (The count-vector resolution this replaced
needed a capacity of twice the forum's distinct addresses for a union-fill rate of ~1e-7; the
per-member test does not.) The benchmark computes the same figure for its parameters and
reports it.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from sigshare.client.config import ClientConfig, write_config
from sigshare.client.errors import HubClientError
from sigshare.client.hub_client import HubClient, HubConnection, RetryPolicy
from sigshare.client.hub_types import ResolveResult, TokenStatus
from sigshare.client.state import LocalState
from sigshare.client.synthetic import CAMPAIGN_TEMPLATES, WORDS
from sigshare.hub.domain import Role
from sigshare.hub.services import parameters, principals
from sigshare.hub.storage import make_engine, migrate, session_scope
from sigshare.hub.storage.audit import AUDIT_LOCK_KEY
from sigshare.hub.storage.principals import PrincipalRepository
from sigshare.hub.storage.submissions import SubmissionRepository
from sigshare.sketch.bloom import BloomParams
from sigshare.sketch.keys import ForumSecret, write_secret_file
from sigshare.sketch.kinds import get_kind
from tests.support.databases import fresh_postgres_database
from tests.support.processes import serve_replicas

KEY_ID = "load-1"
PG_ENV = "SIGSHARE_BENCH_PG"
OWN = 9_500
HOT = 500
BLOCK = 5_000
HOLDINGS = OWN + HOT + 2 * BLOCK
"""E-mail addresses per member."""
FORUM_FPR = 1e-4
HEADROOM = 2
"""Capacity is this many times a member's addresses: every filter is at 1/HEADROOM of its load."""
PROMPTS = 24
REPLICAS = 2
SAMPLE = 6
"""Members whose ``Resolve`` answers are asked of both replicas and compared."""
ROUNDS = 5
"""Resolution rounds of each kind (two replicas, one replica, one at a time, two replicas with
the lock sampler); the best counts."""
LOCK_SAMPLE_INTERVAL = 0.005
PARALLEL_GOAL = 1.5
"""All-at-once on two replicas vs one at a time, on a machine with two idle cores. If answers
serialised on a lock the ratio would stay near 1; without one, only the audit chain's lock is
serial — about 5 ms of a 60 ms call (fraction s ≈ 0.08, measured on the development machine) —
so two processes reach at most 1 / (s + (1 − s)/2) ≈ 1.85."""
COMMAND_TIMEOUT = 900.0
BIN = Path(sys.executable).parent
_LOCKS = text(
    """
    SELECT count(*) FILTER (WHERE granted) AS granted,
           count(*) FILTER (
               WHERE granted
               AND NOT (classid = CAST(:high AS oid) AND objid = CAST(:low AS oid) AND objsubid = 1)
           ) AS not_audit,
           count(*) FILTER (WHERE NOT granted) AS waiting
    FROM pg_locks
    WHERE locktype = 'advisory'
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
    """
)
"""This database's advisory locks: granted, granted other than the audit chain's (a bigint key
shows as ``classid`` = high 32 bits, ``objid`` = low 32 bits, ``objsubid`` = 1), and waited for.
Restricted to this database so that other databases on the server do not count."""


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


def expected_false_positives(params: BloomParams, members: int) -> float:
    """The expected number of wrong answers in one resolution of every member's addresses.

    An answer is wrong only when the filter of a member that does not hold the value gives a
    false positive; every filter holds :data:`HOLDINGS` values, so its rate is
    :meth:`~BloomParams.fpr_at_fill` of the expected fill. Member ``i`` asks about its
    :data:`OWN` addresses (N − 1 filters without them) and its two blocks (N − 2 filters
    without them); hot addresses are in every filter.
    """
    rate = params.fpr_at_fill(params.expected_fill(HOLDINGS))
    pairs = members * (OWN * (members - 1) + 2 * BLOCK * (members - 2))
    return pairs * rate


def _publish(engine: Any, names: list[str], now: datetime) -> tuple[dict[str, str], BloomParams]:
    """Parameters for the forum of ``names``, and the members' credentials."""
    credentials: dict[str, str] = {}
    with session_scope(engine) as session:
        published = parameters.set_kind_parameters(
            session,
            actor="bench",
            kind="email",
            key_id=KEY_ID,
            capacity=HEADROOM * HOLDINGS,
            forum_fpr=FORUM_FPR,
            max_members=len(names),
            quorum=2,
            now=now,
        )
        parameters.set_minhash_parameters(
            session, actor="bench", family="prompt", key_id=KEY_ID, now=now
        )
        for name in names:
            _, issued = principals.add_principal(
                session, actor="bench", name=name, role=Role.MEMBER, now=now
            )
            credentials[name] = issued.token
    return credentials, published.bloom_params()


@dataclass(frozen=True)
class Call:
    seconds: float
    result: ResolveResult | None
    error: str


@dataclass(frozen=True)
class Round:
    wall: float
    calls: list[Call]

    @property
    def concurrency(self) -> float:
        """Σ per-call durations / wall: the number of calls in flight on average."""
        return sum(call.seconds for call in self.calls) / self.wall

    def summary(self) -> dict[str, Any]:
        return {
            "wall_seconds": round(self.wall, 3),
            "call_ms": _percentiles([1000 * call.seconds for call in self.calls]),
            "concurrency": round(self.concurrency, 2),
        }


def _resolve_timed(client: HubClient, tokens: bytes, go: threading.Event | None) -> Call:
    if go is not None:
        go.wait()
    started = time.perf_counter()
    try:
        result = client.resolve("email", KEY_ID, tokens)
    except HubClientError as error:
        return Call(time.perf_counter() - started, None, str(error))
    return Call(time.perf_counter() - started, result, "")


def _resolution_round(calls: list[tuple[HubClient, bytes]], *, parallel: bool) -> Round:
    """Every ``(client, tokens)`` resolve: released together on threads, or one at a time."""
    if not parallel:
        started = time.perf_counter()
        done = [_resolve_timed(client, tokens, None) for client, tokens in calls]
        return Round(time.perf_counter() - started, done)
    go = threading.Event()
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(_resolve_timed, client, tokens, go) for client, tokens in calls]
        started = time.perf_counter()
        go.set()
        done = [future.result() for future in futures]
        wall = time.perf_counter() - started
    return Round(wall, done)


@contextmanager
def _advisory_locks(url: str) -> Iterator[list[tuple[int, int, int]]]:
    """Samples of this database's advisory locks (granted, granted not the audit chain's,
    waiting), taken every :data:`LOCK_SAMPLE_INTERVAL` from a separate connection while the
    block runs, and once at each end."""
    samples: list[tuple[int, int, int]] = []
    stop = threading.Event()
    key = {"high": AUDIT_LOCK_KEY >> 32, "low": AUDIT_LOCK_KEY & 0xFFFFFFFF}
    engine = create_engine(make_url(url), poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:

            def sample() -> None:
                row = connection.execute(_LOCKS, key).one()
                samples.append((int(row.granted), int(row.not_audit), int(row.waiting)))

            def loop() -> None:
                while not stop.wait(LOCK_SAMPLE_INTERVAL):
                    sample()

            sample()
            sampler = threading.Thread(target=loop, name="pg-locks", daemon=True)
            sampler.start()
            try:
                yield samples
            finally:
                stop.set()
                sampler.join(timeout=30)
            sample()
    finally:
        engine.dispose()


def _exact(result: ResolveResult | None, expected: npt.NDArray[np.uint8]) -> bool:
    return (
        result is not None
        and result.count(TokenStatus.ANSWERED) == len(expected)
        and np.array_equal(result.others, expected)
    )


def _resolution_rounds(
    url: str,
    ports: list[int],
    credentials: list[str],
    tokens: list[bytes],
    expected: list[npt.NDArray[np.uint8]],
) -> dict[str, Any]:
    """:data:`ROUNDS` × (all at once on two replicas, all at once on one, one at a time, and
    all at once on two replicas again while the locks are sampled). The timed rounds run
    without the sampler: its queries and wake-ups would be part of what they measure."""
    rounds: dict[str, list[Round]] = {
        "two_replicas": [],
        "one_replica": [],
        "sequential": [],
        "two_replicas_sampled": [],
    }
    samples: list[tuple[int, int, int]] = []
    with ExitStack() as stack:
        # One client per member and replica, connected before any timing; no retries, so a
        # failure is counted instead of hidden in a latency.
        clients = [
            [
                stack.enter_context(
                    HubClient(
                        HubConnection(
                            target=f"127.0.0.1:{port}", credential=credential, insecure=True
                        ),
                        retry=RetryPolicy(attempts=1),
                    )
                )
                for credential in credentials
            ]
            for port in ports
        ]
        for replica in clients:
            for client in replica:
                client.get_parameters()
        spread = [(clients[i % len(ports)][i], tokens[i]) for i in range(len(tokens))]
        single = [(clients[0][i], tokens[i]) for i in range(len(tokens))]
        for _ in range(ROUNDS):
            rounds["two_replicas"].append(_resolution_round(spread, parallel=True))
            rounds["one_replica"].append(_resolution_round(single, parallel=True))
            rounds["sequential"].append(_resolution_round(spread, parallel=False))
            with _advisory_locks(url) as taken:
                rounds["two_replicas_sampled"].append(_resolution_round(spread, parallel=True))
            samples += taken
    best = {name: min(runs, key=lambda r: r.wall) for name, runs in rounds.items()}
    calls = [
        (call, expected[i])
        for runs in rounds.values()
        for run in runs
        for i, call in enumerate(run.calls)
    ]
    errors = [call.error for call, _ in calls if call.error]
    return {
        "tokens_per_member": HOLDINGS,
        "rounds": ROUNDS,
        **{name: run.summary() for name, run in best.items()},
        "two_vs_one_replica": round(best["one_replica"].wall / best["two_replicas"].wall, 2),
        "parallel_vs_sequential": round(best["sequential"].wall / best["two_replicas"].wall, 2),
        "calls": len(calls),
        "errors": len(errors),
        "failures": errors[:3],
        "exact_calls": sum(_exact(call.result, truth) for call, truth in calls),
        "advisory_locks": {
            "samples": len(samples),
            "max_granted": max(granted for granted, _, _ in samples),
            "max_granted_not_audit": max(other for _, other, _ in samples),
            "max_waiting": max(waiting for _, _, waiting in samples),
            "audit_held_fraction": round(
                sum(granted > other for granted, other, _ in samples) / len(samples), 2
            ),
        },
    }


def bench_load(*, quick: bool) -> dict[str, Any]:
    members = 10 if quick else 50
    server_url = os.environ.get(PG_ENV)
    if not server_url:
        message = f"skipped: needs PostgreSQL (--pg URL or ${PG_ENV})"
        print(f"load: {message}", file=sys.stderr)
        return {"skipped": message, "members": members}
    with (
        tempfile.TemporaryDirectory(prefix="sigshare-load-bench-") as temporary,
        fresh_postgres_database(make_url(server_url), "sigshare_load") as database,
    ):
        url = database.render_as_string(hide_password=False)
        directory = Path(temporary)
        engine = make_engine(url)
        try:
            migrate.upgrade(engine)
            names = [f"load{index:02d}" for index in range(members)]
            credentials, bloom = _publish(engine, names, datetime.now(UTC))
            secret_file = directory / "forum.secret"
            write_secret_file(secret_file, ForumSecret.generate(KEY_ID))
            with serve_replicas(url, directory, REPLICAS) as replicas:
                ports = [replica.port for replica in replicas]
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
                tokens: list[bytes] = []
                expected: list[npt.NDArray[np.uint8]] = []
                for state_dir, truth in zip(states, truths, strict=True):
                    with LocalState.open(state_dir) as state:
                        canonicals, own = state.indicator_tokens("email")
                    tokens.append(b"".join(own))
                    expected.append(np.array([truth.get(c, 0) for c in canonicals], dtype=np.uint8))
                member_credentials = [credentials[name] for name in names]
                replicas_identical, compared = _compare_replicas(
                    ports, member_credentials[:SAMPLE], tokens[:SAMPLE]
                )
                resolution = _resolution_rounds(url, ports, member_credentials, tokens, expected)
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
    rows = members * HOLDINGS
    return {
        "members": members,
        "replicas": REPLICAS,
        "indicators_per_member": HOLDINGS,
        "prompts_per_member": PROMPTS,
        "capacity": bloom.capacity,
        "forum_fpr": FORUM_FPR,
        "max_members": members,
        "m": bloom.m,
        "k": bloom.k,
        "filter_bytes": bloom.nbytes,
        "expected_false_positives": float(f"{expected_false_positives(bloom, members):.3g}"),
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
        "resolution": resolution,
    }


def _compare_replicas(
    ports: list[int], credentials: list[str], tokens: list[bytes]
) -> tuple[bool, int]:
    """Ask every replica to resolve the same members' own tokens; whether all answers agree."""
    identical = True
    for credential, own in zip(credentials, tokens, strict=True):
        seen = []
        for port in ports:
            with HubClient(
                HubConnection(target=f"127.0.0.1:{port}", credential=credential, insecure=True)
            ) as client:
                result = client.resolve("email", KEY_ID, own)
            seen.append(result)
        first = seen[0]
        identical &= all(
            (result.members, result.quorum) == (first.members, first.quorum)
            and np.array_equal(result.status, first.status)
            and np.array_equal(result.others, first.others)
            for result in seen[1:]
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
    resolution = result["resolution"]
    correct = (
        result["exact_members"] == result["members"]
        and result["one_active_per_kind"]
        and result["replicas_identical"]
        and resolution["exact_calls"] == resolution["calls"]
    )
    return [
        {
            "goal": (
                f"{result['members']} concurrent syncs on {result['replicas']} replicas: errors"
            ),
            "measured": result["errors"] + resolution["errors"],
            "target": "= 0",
            "met": result["errors"] + resolution["errors"] == 0,
        },
        {
            "goal": "load: every member's shared indicators and answers equal the oracle",
            "measured": result["exact_members"],
            "target": f"= {result['members']} (all)",
            "met": correct,
        },
        {
            "goal": (
                f"resolutions on {result['replicas']} replicas run concurrently: "
                "one-at-a-time wall / all-at-once wall"
            ),
            "measured": resolution["parallel_vs_sequential"],
            "target": f"> {PARALLEL_GOAL}",
            "met": resolution["parallel_vs_sequential"] > PARALLEL_GOAL,
        },
        {
            "goal": "advisory locks other than the audit chain's held while answering",
            "measured": resolution["advisory_locks"]["max_granted_not_audit"],
            "target": "= 0",
            "met": resolution["advisory_locks"]["max_granted_not_audit"] == 0,
        },
    ]


def _spread(p: dict[str, float], unit: str) -> str:
    return f"{p['p50']:.2f} / {p['p95']:.2f} / {p['p99']:.2f} / {p['max']:.2f} {unit}"


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
    table.add_row(
        f"e-mail filter (capacity {r['capacity']:,}, forum FPR {r['forum_fpr']:g}, "
        f"{r['max_members']} members)",
        f"m = {r['m']:,}, k = {r['k']}, {r['filter_bytes'] / 1024:,.0f} KiB",
    )
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
        table.add_row(f"{label} p50 / p95 / p99 / max", _spread(r[key], "s"))
    table.add_row("members equal to the oracle", f"{r['exact_members']} / {r['members']}")
    table.add_row(
        "oracle mismatches / false positives (expected from the maths)",
        f"{r['oracle_mismatches']} / {r['false_positives']} ({r['expected_false_positives']:.1e})",
    )
    table.add_row("one active submission per kind", "yes" if r["one_active_per_kind"] else "NO")
    table.add_row(
        f"replicas' Resolve answers identical ({r['replica_sample']} members sampled)",
        "yes" if r["replicas_identical"] else "NO",
    )
    v = r["resolution"]
    for label, key in (
        (f"all at once, half on each of {r['replicas']} replicas", "two_replicas"),
        ("all at once, one replica", "one_replica"),
        ("one at a time", "sequential"),
        ("all at once on 2 replicas, locks sampled", "two_replicas_sampled"),
    ):
        figures = v[key]
        table.add_row(
            f"resolve round, {label}: wall / concurrency",
            f"{figures['wall_seconds']:.2f} s / {figures['concurrency']:.1f}",
        )
        table.add_row("  per call p50 / p95 / p99 / max", _spread(figures["call_ms"], "ms"))
    table.add_row("resolve speed-up: 2 replicas vs 1", f"{v['two_vs_one_replica']:.2f}×")
    table.add_row(
        "resolve speed-up: all at once (2 replicas) vs one at a time",
        f"{v['parallel_vs_sequential']:.2f}×",
    )
    locks = v["advisory_locks"]
    table.add_row(
        f"advisory locks in the sampled rounds ({locks['samples']} samples): "
        "max granted / not audit / waiting",
        f"{locks['max_granted']} / {locks['max_granted_not_audit']} / {locks['max_waiting']}",
    )
    table.add_row(
        "  samples with the audit chain's lock held", f"{locks['audit_held_fraction']:.0%}"
    )
    table.add_row(
        f"resolve answers equal to the oracle ({v['rounds']} rounds of each kind)",
        f"{v['exact_calls']} / {v['calls']} calls, {v['errors']} errors",
    )
    Console().print(table)
