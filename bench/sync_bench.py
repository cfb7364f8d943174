"""The member's nightly sync at scale: 1M account indicators and 100k prompts (quick: 100k/10k).

A hub runs in this process (SQLite in a temporary directory, loopback gRPC) with a second member
that already submitted an overlapping set, so resolution has something to find. The member
under test runs ``sigshare sync --json`` as a child process, so its wall time and peak memory
(``ru_maxrss`` of that child, from ``wait4``) are its own. Phases come from the sync's own
timings; ``read`` and ``canonicalise`` are split by timing a plain CSV/JSON parse of the same
files in this process. The ``resolve`` phase is the pull: the member sends the tokens of all its
values to the hub's ``Resolve`` and stores the answers (it used to download a count vector and
test positions locally), so it now grows with the member's values, not with the filter size.
"""

from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sigshare.client.config import ClientConfig, write_config
from sigshare.client.hub_client import HubClient, HubConnection
from sigshare.client.inputs import RejectSink
from sigshare.client.state import LocalState
from sigshare.client.sync import SyncJob
from sigshare.client.synthetic import CAMPAIGN_TEMPLATES, SUBJECTS, WORDS
from sigshare.hub.domain import Role
from sigshare.hub.rpc.app import build_hub
from sigshare.hub.rpc.server import parse_listen
from sigshare.hub.services import parameters, principals
from sigshare.hub.storage import make_engine, migrate, session_scope
from sigshare.sketch.keys import ForumSecret, load_secret_file, write_secret_file

KEY_ID = "bench-1"
FILTER_FPR = 1e-3
"""Per-filter rate: with ``max_members=2`` the forum rate is the rate of the one other filter,
so ``m`` and ``k`` are what a 1e-3 filter of this capacity always had."""


def _emails(start: int, count: int) -> list[str]:
    return [f"User{i:08d}@Mail{i % 997}.example.com" for i in range(start, start + count)]


def _write_indicators(path: Path, values: list[str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["kind", "value", "category", "first_seen"])
        for value in values:
            writer.writerow(["email", value, "distillation", "2026-11-20"])


def _write_prompts(path: Path, count: int, seed: int) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as handle:
        for index in range(count):
            if index % 2:  # half campaign traffic over many templates, half organic
                template = CAMPAIGN_TEMPLATES[index % len(CAMPAIGN_TEMPLATES)]
                text = template.format(
                    subject=SUBJECTS[index % len(SUBJECTS)], slot=" ".join(rng.choices(WORDS, k=10))
                )
            else:
                text = " ".join(rng.choices(WORDS, k=rng.randint(12, 40))) + "?"
            handle.write(json.dumps({"text": text, "category": "distillation"}) + "\n")


def _plain_parse_seconds(csv_path: Path, prompts_path: Path) -> float:
    started = time.perf_counter()
    with csv_path.open(newline="", encoding="utf-8") as handle:
        for _ in csv.DictReader(handle):
            pass
    with prompts_path.open(encoding="utf-8") as handle:
        for line in handle:
            json.loads(line)
    return time.perf_counter() - started


def _run_measured(command: list[str]) -> tuple[int, str, str, float, float]:
    """Run ``command``; its exit code, stdout, stderr, wall seconds and peak RSS in MiB.

    The peak comes from ``wait4`` on that child alone (``RUSAGE_CHILDREN`` would report the
    largest child this process ever waited for).
    """
    started = time.perf_counter()
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy()
    )
    out: dict[str, str] = {}
    streams = {"stdout": process.stdout, "stderr": process.stderr}

    def drain(name: str) -> None:
        stream = streams[name]
        out[name] = stream.read() if stream is not None else ""

    readers = [threading.Thread(target=drain, args=(name,)) for name in streams]
    for reader in readers:
        reader.start()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    for reader in readers:
        reader.join()
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, out["stdout"], out["stderr"], seconds, usage.ru_maxrss / 1024


def bench_sync(*, quick: bool) -> dict[str, Any]:
    indicators = 100_000 if quick else 1_000_000
    prompts = 10_000 if quick else 100_000
    capacity = indicators * 2
    other_start = indicators * 2 // 3
    with tempfile.TemporaryDirectory(prefix="sigshare-sync-bench-") as temporary:
        directory = Path(temporary)
        engine = make_engine(f"sqlite:///{directory / 'hub.db'}")
        migrate.upgrade(engine)
        now = datetime.now(UTC)
        credentials = {}
        with session_scope(engine) as session:
            parameters.set_kind_parameters(
                session,
                actor="bench",
                kind="email",
                key_id=KEY_ID,
                capacity=capacity,
                forum_fpr=FILTER_FPR,
                max_members=2,
                now=now,
            )
            parameters.set_minhash_parameters(
                session, actor="bench", family="prompt", key_id=KEY_ID, now=now
            )
            for name in ("member", "other"):
                _, credential = principals.add_principal(
                    session, actor="bench", name=name, role=Role.MEMBER, now=now
                )
                credentials[name] = credential.token
        server = build_hub(engine, parse_listen("127.0.0.1:0"), tls=None, insecure=True)
        server.server.start()
        try:
            secret_file = directory / "forum.secret"
            write_secret_file(secret_file, ForumSecret.generate(KEY_ID))
            configs = {}
            for name in ("member", "other"):
                home = directory / name
                home.mkdir(mode=0o700)
                (home / "credential").write_text(credentials[name])
                (home / "credential").chmod(0o600)
                configs[name] = ClientConfig(
                    hub=f"127.0.0.1:{server.port}",
                    credential_file=home / "credential",
                    secret_file=secret_file,
                    state_dir=home / "state",
                    insecure=True,
                    timeout_seconds=600,
                )
                write_config(home / "config.toml", configs[name])
            # The other member holds our last third plus as many of its own.
            other_csv = directory / "other.csv"
            _write_indicators(other_csv, _emails(other_start, indicators // 3 * 2))
            other_prompts = directory / "other.jsonl"
            _write_prompts(other_prompts, prompts // 10, seed=2)
            secret = load_secret_file(secret_file)
            with (
                HubClient(
                    HubConnection(
                        target=f"127.0.0.1:{server.port}",
                        credential=credentials["other"],
                        insecure=True,
                    )
                ) as client,
                LocalState.open(configs["other"].state_dir) as state,
                RejectSink() as rejects,
            ):
                SyncJob(client=client, state=state, secret=secret).push(
                    [other_csv], [other_prompts], rejects=rejects
                )
            member_csv = directory / "member.csv"
            member_prompts = directory / "member.jsonl"
            _write_indicators(member_csv, _emails(0, indicators))
            _write_prompts(member_prompts, prompts, seed=1)
            plain = _plain_parse_seconds(member_csv, member_prompts)
            command = [
                str(Path(sys.executable).with_name("sigshare")),
                "sync",
                "--json",
                "--config",
                str(directory / "member" / "config.toml"),
                str(member_csv),
                str(member_prompts),
            ]
            code, stdout, stderr, seconds, peak_mib = _run_measured(command)
            if code != 0:
                raise RuntimeError(f"sync failed ({code}): {stderr}")
            document = json.loads(stdout)
            code, stdout, stderr, rerun_seconds, _ = _run_measured(command)
            if code != 0:
                raise RuntimeError(f"re-run failed ({code}): {stderr}")
            rerun_document = json.loads(stdout)
        finally:
            server.stop(1)
            engine.dispose()
    phases = dict(document["phases"])
    read_total = phases.pop("read", 0.0)
    phases = {
        "read": round(min(plain, read_total), 2),
        "canonicalise": round(max(read_total - plain, 0.0), 2),
        **{name: round(value, 2) for name, value in phases.items()},
    }
    shared = document["pull"]["shared_indicators"].get("email", 0)
    return {
        "indicators": indicators,
        "prompts": prompts,
        "seconds": round(seconds, 2),
        "peak_memory_mib": round(peak_mib, 1),
        "phases": phases,
        "shared_indicators": shared,
        "expected_shared": indicators - other_start,
        "rerun_seconds": round(rerun_seconds, 2),
        "rerun_unchanged": all(s["unchanged"] for s in rerun_document["push"]["submissions"]),
    }


BENCHMARKS = {"sync": bench_sync}


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    if "sync" not in results or results["sync"]["indicators"] < 1_000_000:
        return []
    result = results["sync"]
    return [
        {
            "goal": "full sync, 1M indicators + 100k prompts (s)",
            "measured": result["seconds"],
            "target": "≤ 60",
            "met": result["seconds"] <= 60,
        },
        {
            "goal": "sync peak memory (MiB)",
            "measured": result["peak_memory_mib"],
            "target": "≤ 2048",
            "met": result["peak_memory_mib"] <= 2048,
        },
    ]


def print_table(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    if "sync" not in results:
        return
    r = results["sync"]
    table = Table(
        title=f"member sync: {r['indicators']:,} indicators + {r['prompts']:,} prompts",
        title_justify="left",
    )
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("full sync (child process)", f"{r['seconds']:.1f} s")
    table.add_row("peak memory (child RSS)", f"{r['peak_memory_mib']:,.0f} MiB")
    for name, seconds in r["phases"].items():
        table.add_row(f"  phase {name}", f"{seconds:.2f} s")
    table.add_row(
        "shared indicators found / planted",
        f"{r['shared_indicators']:,} / {r['expected_shared']:,}",
    )
    table.add_row(
        "re-run (unchanged inputs)",
        f"{r['rerun_seconds']:.1f} s, {'all unchanged' if r['rerun_unchanged'] else 'CHANGED'}",
    )
    Console().print(table)
