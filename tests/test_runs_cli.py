"""`fusionkit runs list | show | prune` over a store a real router wrote, and through `--url`."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
from click.testing import CliRunner

from fusionkit_cli.main import cli
from server.app import create_app
from server.store import RunStore, new_run_id
from server.store import upkeep as upkeep_module
from tests.router_helpers import demo_endpoints, panel_config


def test_list_show_and_prune(tmp_path: Path, live_server: Any) -> None:
    config = panel_config(tmp_path, demo_endpoints(fast={"fail_rate": 1.0}), judge_model="careful")
    server = live_server(create_app(config))
    run = httpx2.post(
        f"{server.url}/v1/fusion/runs",
        json={"messages": [{"role": "user", "content": "Compare two queues"}], "mode": "panel"},
    ).json()
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
    # Two days later (the run's last update moved back, not the clock forward): a day's retention prunes it.
    two_days_ago = (datetime.now(UTC) - timedelta(days=2)).isoformat(timespec="milliseconds")
    with sqlite3.connect(store) as conn:
        conn.execute("UPDATE runs SET updated_at = ? WHERE run_id = ?", (two_days_ago, run["run_id"]))
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


def test_prune_goes_in_batches_each_its_own_transaction(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "runs.sqlite3"

    async def record() -> None:
        async with RunStore(store) as opened:
            for _ in range(5):
                run_id = new_run_id()
                await opened.create_run(run_id, mode="panel", request={}, trace_id=None)
                await opened.transition(run_id, "completed", terminal_reason="completed")

    asyncio.run(record())
    with sqlite3.connect(store) as conn:
        conn.execute("UPDATE runs SET updated_at = '2000-01-01T00:00:00.000+00:00'")
    # One call of the store's prune is one transaction: each removes at most a batch.
    monkeypatch.setattr(upkeep_module, "PRUNE_BATCH", 2)
    calls: list[tuple[int | None, int]] = []
    prune = RunStore.prune

    async def watched(self: RunStore, *args: Any, **kwargs: Any) -> int:
        removed = await prune(self, *args, **kwargs)
        calls.append((kwargs.get("limit"), removed))
        return removed

    monkeypatch.setattr(RunStore, "prune", watched)
    result = CliRunner().invoke(cli, ["runs", "prune", "--store", str(store), "--older-than-days", "1"])
    assert result.exit_code == 0 and "removed 5 runs" in result.output, result.output
    assert calls == [(2, 2), (2, 2), (2, 1)]
