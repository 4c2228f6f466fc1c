"""`python -m bench.ab [--bridges] [--rounds N] OLD:NEW ...`: fused throughput of two source trees, alternated.

Each OLD or NEW is a directory holding a FusionKit source tree (a `git worktree add --detach DIR
COMMIT` of the commit to measure), or `.` for this one. For each pair the router_throughput load
(fused requests, a panel of three over instant upstreams, concurrency 8) runs against OLD, then
NEW, `--rounds` times, each round a fresh process: alternating keeps the machine's drift out of
the comparison, which is what a change's cost is read from. With `--bridges` every endpoint is
reached through its own bridge, as under `fusionkit up`; with `--otel` every process exports
OpenTelemetry spans to the stand-in (which drops them). One JSON line per measured round on
stdout: the pair, the tree, the round, fused req/s and CPU ms per fused request of the router,
of its child processes (its span exporter) and of the bridges together.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from contextlib import ExitStack
from pathlib import Path

from bench.load import run_load
from bench.scenarios.common import (
    FUSED,
    FUSED_EXPECT,
    Server,
    bridge,
    cpu_per_request,
    router,
    upstream,
    write_config,
)

PANEL = ("p1", "p2", "p3")


def _measure(source: Path, config: Path, bridged: bool, requests: int) -> dict[str, float]:
    with ExitStack() as stack:
        bridges: dict[str, Server] = {}
        if bridged:
            for name in PANEL:
                bridges[name] = stack.enter_context(bridge("--config", str(config), "--endpoint", name, source=source))
        front = stack.enter_context(router(config, {n: b.url for n, b in bridges.items()} or None, source=source))
        url = f"{front.url}/v1/chat/completions"
        run_load(url, FUSED, requests=requests // 5, concurrency=8, expect=FUSED_EXPECT)  # warm-up
        servers = {"router": front, **bridges}
        load, spent = cpu_per_request(
            servers,
            lambda: run_load(url, FUSED, requests=requests, concurrency=8, expect=FUSED_EXPECT),
            children=True,
        )
        row = {
            "req_s": round(load.req_per_s, 1),
            "router_cpu_ms": round(spent["router"], 3),
            "router_children_cpu_ms": round(spent["router children"], 3),
        }
        if bridged:
            row["bridges_cpu_ms"] = round(sum(spent[name] for name in bridges), 3)
        return row


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__.splitlines()[0])
    parser.add_argument("pairs", nargs="+", metavar="OLD:NEW", help="two source trees to alternate")
    parser.add_argument("--bridges", action="store_true", help="one bridge per endpoint, as under fusionkit up")
    parser.add_argument("--otel", action="store_true", help="OpenTelemetry on, spans exported to the stand-in")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per tree (default 2)")
    parser.add_argument("--requests", type=int, default=1200, help="timed fused requests per round (default 1200)")
    args = parser.parse_args()
    pairs = []
    for pair in args.pairs:
        old, sep, new = pair.partition(":")
        if not sep or not old or not new:
            parser.error(f"{pair!r} is not OLD:NEW")
        for tree in (old, new):
            if not (Path(tree) / "fusionkit_cli").is_dir():
                parser.error(f"{tree!r} is not a FusionKit source tree (no fusionkit_cli/ in it)")
        pairs.append((old, new))
    with tempfile.TemporaryDirectory() as tmp, upstream(*(f"{name}=0" for name in PANEL)) as stand_in:
        endpoints = {name: f"{stand_in.url}/{name}/v1" for name in PANEL}
        for old, new in pairs:
            for round_ in range(args.rounds):
                for tree in (old, new):
                    otel = {"server": {"otel": {"endpoint": stand_in.url}}} if args.otel else {}
                    config = write_config(Path(tmp), endpoints, judge_model="p1", synthesizer_model="p3", **otel)
                    row = _measure(Path(tree).resolve(), config, args.bridges, args.requests)
                    print(json.dumps({"pair": f"{old}:{new}", "tree": tree, "round": round_, **row}), flush=True)


if __name__ == "__main__":
    main()
