"""`python -m bench [--quick] [--only NAME ...]`: run the scenarios, record them, redraw the chart and tables.

Writes bench/results/<date>-<machine>.json (a later run the same day on the same machine
replaces the scenarios it ran and keeps the others), bench/results/fused-request-phases.png
from one recorded run, and the tables of docs/benchmarks.md. A scenario that fails is recorded
as not measured, with its reason, and the others still run. Exit status 1 if any failed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from bench.chart import phase_chart
from bench.machine import ForeignLoad, reference_ms, wait_until_quiet
from bench.report import update_docs
from bench.scenarios import SCENARIOS, Settings

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CHART = RESULTS / "fused-request-phases.png"
DOCS = ROOT / "docs" / "benchmarks.md"


def _machine() -> str:
    return f"{platform.machine()}-{os.cpu_count()}cpu"


def _load(path: Path) -> dict[str, Any]:
    """Today's results so far; a file from an older layout of the suite is started afresh."""
    data = json.loads(path.read_text()) if path.exists() else {}
    return data if isinstance(data.get("scenarios"), dict) else {"scenarios": {}}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests and repeats (about a minute)")
    parser.add_argument("--only", nargs="+", choices=list(SCENARIOS), metavar="NAME", help="run only these")
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/benchmarks.md")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=60,
        metavar="S",
        help="before each scenario, wait up to S seconds for other processes to leave the CPU (default 60)",
    )
    args = parser.parse_args()

    date = datetime.date.today().isoformat()
    out = RESULTS / f"{date}-{_machine()}.json"
    results = _load(out)
    results.update(
        date=date,
        machine=f"{os.cpu_count()} cores, {platform.machine()}, {platform.system()}",
        python=platform.python_version(),
        command=shlex.join(["python", "-m", "bench", *sys.argv[1:]]),
        file=str(out.relative_to(ROOT)),
    )
    failed = False
    with tempfile.TemporaryDirectory(prefix="fusionkit-bench-") as tmp:
        for name in args.only or SCENARIOS:
            print(f"== {name}", flush=True)
            workdir = Path(tmp) / name
            workdir.mkdir()
            before = wait_until_quiet(args.wait_quiet) if args.wait_quiet > 0 else None
            speed = reference_ms()
            started = time.perf_counter()
            try:
                with ForeignLoad() as foreign:
                    result = SCENARIOS[name](Settings(quick=args.quick, workdir=workdir))
            except Exception as exc:
                traceback.print_exc()
                failed = True
                results["scenarios"][name] = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0][:300]}
                continue
            record = {
                "quick": args.quick,
                "seconds": round(time.perf_counter() - started, 1),
                # Other processes' CPU (in cores) just before and while it ran: above ~0.1, the numbers are not fair.
                "foreign_load_cores": {"before": before, "during": foreign.cores},
                # CPU ms of a fixed Python loop before and after: the host's speed, which varies unseen.
                "reference_loop_ms": {"before": speed, "after": reference_ms()},
                **result.model_dump(),
            }
            results["scenarios"][name] = record
            if foreign.cores > 0.1:
                print(f"  warning: other processes used {foreign.cores} cores meanwhile", flush=True)
            for row in result.rows:
                verdict = "" if row.met is None else ("  met" if row.met else "  MISSED")
                print(f"  {row.name}: median {row.median} {row.unit}, p95 {row.p95}{verdict}", flush=True)
            if name == "router_latency":
                phase_chart(
                    result.details["chart_events"], CHART, "One fused request, panel of 3 over 100 ms", upstream_ms=100
                )
                print(f"  chart: {CHART.relative_to(ROOT)}", flush=True)
    # The suite's order, whatever order this run and earlier ones today ran in.
    results["scenarios"] = {n: results["scenarios"][n] for n in SCENARIOS if n in results["scenarios"]}
    RESULTS.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")
    if not args.no_docs:
        update_docs(DOCS, results)
        print(f"wrote the tables of {DOCS.relative_to(ROOT)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
