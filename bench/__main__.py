"""`python -m bench [--quick]`: run every scenario, write bench/results/<date>-<machine>.json and the chart.

The tables in docs/benchmarks.md are written by hand from these results (with the command and
the machine), so the prose around them stays readable.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import tempfile
from pathlib import Path

from bench import scenarios
from bench.chart import phase_chart

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="fewer requests (about a minute)")
    parser.add_argument("--only", nargs="*", help="scenario names to run")
    args = parser.parse_args()
    names = [
        "bridge_passthrough",
        "router_panel_latency",
        "router_throughput",
        "streaming_first_token",
        "straggler",
        "up_cold_start",
    ]
    results: dict[str, object] = {
        "date": datetime.date.today().isoformat(),
        "machine": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "quick": args.quick,
    }
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        for name in args.only or names:
            print(f"== {name}", flush=True)
            run = getattr(scenarios, name)
            result = run(args.quick) if name == "bridge_passthrough" else run(args.quick, directory)
            if name == "router_panel_latency":
                chart = RESULTS / "fused-request-phases.png"
                phase_chart(result.pop("events"), chart)
                result["chart"] = str(chart.relative_to(RESULTS.parent.parent))
            results[name] = result
            print(json.dumps(result, indent=1), flush=True)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{results['date']}-{platform.machine()}-{os.cpu_count()}cpu.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
