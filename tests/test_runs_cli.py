"""`fusionkit runs list | show | prune` over a store a real router wrote, and through `--url`."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
from click.testing import CliRunner

from fusionkit_cli.main import cli
from server.app import create_app
from server.store import RunStore
from tests.router_helpers import demo_endpoints, panel_config


def test_list_show_and_prune(tmp_path: Path, live_server: Any) -> None:
    config = panel_config(tmp_path, demo_endpoints(fast={"fail_rate": 1.0}), judge_model="careful")
    server = live_server(create_app(config))
    run = httpx2.post(
        f"{server.url}/v1/fusion/runs",
        json={"messages": [{"role": "user", "content": "Compare two queues"}], "mode": "panel"},
    ).json()["run"]
    store = str(tmp_path / "runs.sqlite3")
    runner = CliRunner()

    listed = runner.invoke(cli, ["runs", "list", "--store", store])
    assert listed.exit_code == 0 and run["run_id"] in listed.output and "completed" in listed.output
    assert runner.invoke(cli, ["runs", "list", "--url", server.url]).output == listed.output

    shown = runner.invoke(cli, ["runs", "show", run["run_id"], "--store", store])
    assert shown.exit_code == 0, shown.output
    for expected in (
        "CANDIDATES",
        "[c1] fast: DROPPED: mock model mock-concise failed on purpose",
        "[c2] careful (mock-cautious)",
        "JUDGE (careful)",
        "ranking:",
        "DECISION  synthesize",
        "FINAL ANSWER",
        "TIMINGS",
    ):
        assert expected in shown.output
    assert runner.invoke(cli, ["runs", "show", run["run_id"], "--url", server.url]).output == shown.output

    assert runner.invoke(cli, ["runs", "show", "../../etc/passwd", "--store", store]).exit_code == 2
    missing = runner.invoke(cli, ["runs", "show", "run_" + "0" * 24, "--store", store])
    assert missing.exit_code == 2 and "no run" in missing.output

    kept = runner.invoke(cli, ["runs", "prune", "--store", store, "--older-than-days", "1"])
    assert kept.exit_code == 0 and "removed 0 runs" in kept.output
    with sqlite3.connect(store) as conn:  # the run ended two days ago (not: a cutoff of milliseconds, a race)
        conn.execute("UPDATE runs SET updated_at = ?", ((datetime.now(UTC) - timedelta(days=2)).isoformat(),))
    removed = runner.invoke(cli, ["runs", "prune", "--store", store, "--older-than-days", "1"])
    assert "removed 1 runs" in removed.output

    async def left() -> tuple[int, Any]:
        opened = RunStore(store)
        try:
            return len(await opened.list_runs()), await opened.get_artifact("0" * 64)
        finally:
            await opened.close()

    assert asyncio.run(left()) == (0, None)
    assert runner.invoke(cli, ["runs", "prune", "--store", store]).exit_code == 2  # no retention given
