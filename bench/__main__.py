"""``python -m bench [--quick] [--json] [--only NAME]``: every figure and ratio in one run."""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from typing import Any

import numpy as np

from bench import sketch_bench


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller data: under a minute")
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    parser.add_argument(
        "--only", choices=sorted(sketch_bench.BENCHMARKS), action="append", help="run a subset"
    )
    args = parser.parse_args(argv)
    names = args.only or list(sketch_bench.BENCHMARKS)
    started = time.perf_counter()
    results: dict[str, Any] = {}
    for name in names:
        if not args.json:
            print(f"running {name}...", file=sys.stderr, flush=True)
        results[name] = sketch_bench.BENCHMARKS[name](quick=args.quick)
    document = {
        "mode": "quick" if args.quick else "full",
        "machine": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "processor": platform.processor() or platform.machine(),
        },
        "results": results,
        "goals": sketch_bench.goals(results),
        "seconds": round(time.perf_counter() - started, 1),
    }
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        sketch_bench.print_table(document)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
