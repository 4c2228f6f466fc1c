"""Which run store `serve`, `runs` and `runs rejudge` use (fusionkit_cli/run_store.py), and a store that cannot
be used told as the user's mistake: exit 2 naming FUSIONKIT_RUN_STORE, `--store` or `server.run_store`, never
a traceback, never a password. `serve` is run up to the point where it would serve (uvicorn's run stubbed)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from click.testing import CliRunner

from fusionkit_cli.main import cli
from server.store import SCHEMA_VERSION, RunStore

BAD_URL = "postgresql://fk:s3cret@db:port/fk"


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Records that `serve` got as far as serving (it returns at once instead)."""
    serving: list[bool] = []

    def run(server: uvicorn.Server, *args: Any, **kwargs: Any) -> None:
        serving.append(True)
        server.started = True

    monkeypatch.setattr(uvicorn.Server, "run", run)
    return serving


def config_file(tmp_path: Path, run_store: Path | str) -> Path:
    path = tmp_path / "panel.yaml"
    endpoint = {"id": "a", "provider": "mock", "model": "m"}
    path.write_text(json.dumps({"endpoints": [endpoint], "server": {"run_store": str(run_store)}}))
    return path


def too_new(path: Path) -> Path:
    """A store written by a fusionkit newer than this one."""

    async def create() -> None:
        async with RunStore(path):
            pass

    asyncio.run(create())
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO schema_version VALUES (?, ?)", (SCHEMA_VERSION + 1, "2100-01-01T00:00:00.000+00:00"))
    return path


def refused(result: Any, *expected: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "s3cret" not in result.output
    for text in expected:
        assert text in result.output


def test_a_malformed_fusionkit_run_store_fails_serve_and_runs_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, served: list[bool]
) -> None:
    config = config_file(tmp_path, tmp_path / "runs.sqlite3")
    monkeypatch.setenv("FUSIONKIT_RUN_STORE", BAD_URL)
    expected = ("FUSIONKIT_RUN_STORE: found 'postgresql://fk@db:port/fk'", "a valid postgresql:// URL")
    refused(CliRunner().invoke(cli, ["serve", "--config", str(config), "--port", "1"]), *expected)
    assert not served
    refused(CliRunner().invoke(cli, ["runs", "list", "--config", str(config)]), *expected)
    refused(CliRunner().invoke(cli, ["runs", "list"]), *expected)
    monkeypatch.delenv("FUSIONKIT_RUN_STORE")
    refused(
        CliRunner().invoke(cli, ["runs", "list", "--store", BAD_URL]), "--store: found 'postgresql://fk@db:port/fk'"
    )


def test_a_store_from_a_newer_fusionkit_fails_serve_and_runs_naming_where_it_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, served: list[bool]
) -> None:
    store = too_new(tmp_path / "runs.sqlite3")
    config = config_file(tmp_path, store)
    newer = f"run store schema version {SCHEMA_VERSION + 1}"
    refused(CliRunner().invoke(cli, ["serve", "--config", str(config)]), f"{config}: server.run_store: ", newer)
    refused(CliRunner().invoke(cli, ["runs", "list", "--config", str(config)]), f"{config}: server.run_store: ", newer)
    refused(CliRunner().invoke(cli, ["runs", "list", "--store", str(store)]), "--store: ", newer)
    monkeypatch.setenv("FUSIONKIT_RUN_STORE", str(store))
    refused(CliRunner().invoke(cli, ["runs", "list"]), "FUSIONKIT_RUN_STORE: ", newer)
    assert not served


def test_a_store_path_where_no_file_can_be_made_fails_serve(tmp_path: Path, served: list[bool]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    config = config_file(tmp_path, blocker / "runs.sqlite3")
    result = CliRunner().invoke(cli, ["serve", "--config", str(config)])
    refused(result, f"{config}: server.run_store: {blocker}/runs.sqlite3: no run store can be made here")
    assert not served


def test_serve_uses_fusionkit_run_store_when_it_is_good(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, served: list[bool]
) -> None:
    config = config_file(tmp_path, tmp_path / "configured.sqlite3")
    monkeypatch.setenv("FUSIONKIT_RUN_STORE", str(tmp_path / "chosen.sqlite3"))
    result = CliRunner().invoke(cli, ["serve", "--config", str(config), "--port", "1"])
    assert result.exit_code == 0 and served, result.output
    assert (tmp_path / "chosen.sqlite3").exists() and not (tmp_path / "configured.sqlite3").exists()
