"""``python -m bench [--quick] [--json] [--only NAME]``: every figure and ratio in one run."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from typing import Any

import numpy as np

from bench import (
    hub_bench,
    keyring_bench,
    load_bench,
    resolution_bench,
    rewording_bench,
    sketch_bench,
    sync_bench,
    web_bench,
)

BENCHMARKS = {
    **sketch_bench.BENCHMARKS,
    **hub_bench.BENCHMARKS,
    **resolution_bench.BENCHMARKS,
    **sync_bench.BENCHMARKS,
    **web_bench.BENCHMARKS,
    **load_bench.BENCHMARKS,
    **rewording_bench.BENCHMARKS,
    **keyring_bench.BENCHMARKS,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller data: under a minute")
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    parser.add_argument("--only", choices=sorted(BENCHMARKS), action="append", help="run a subset")
    parser.add_argument(
        "--pg",
        metavar="URL",
        help=f"also run the hub benchmarks on PostgreSQL (a server URL; or ${hub_bench.PG_ENV})",
    )
    args = parser.parse_args(argv)
    if args.pg:
        os.environ[hub_bench.PG_ENV] = args.pg
    names = args.only or list(BENCHMARKS)
    started = time.perf_counter()
    results: dict[str, Any] = {}
    for name in names:
        if not args.json:
            print(f"running {name}...", file=sys.stderr, flush=True)
        results[name] = BENCHMARKS[name](quick=args.quick)
    document = {
        "mode": "quick" if args.quick else "full",
        "machine": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "processor": platform.processor() or platform.machine(),
        },
        "results": results,
        "goals": (
            sketch_bench.goals(results)
            + hub_bench.goals(results)
            + resolution_bench.goals(results)
            + sync_bench.goals(results)
            + web_bench.goals(results)
            + load_bench.goals(results)
            + rewording_bench.goals(results)
            + keyring_bench.goals(results)
        ),
        "seconds": round(time.perf_counter() - started, 1),
    }
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        if any(name in sketch_bench.BENCHMARKS for name in names):
            sketch_bench.print_table(document)
        if any(name in hub_bench.BENCHMARKS for name in names):
            hub_bench.print_table(results)
        resolution_bench.print_table(results)
        sync_bench.print_table(results)
        web_bench.print_table(results)
        load_bench.print_table(results)
        rewording_bench.print_table(results)
        keyring_bench.print_table(results)
        sketch_bench.print_goals(document)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
