"""The garbage collector while a command starts (fusionkit_cli/main.py): off while a server builds
itself, on before it serves, on for every other command, and as it was once the command returns."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from click.testing import CliRunner

import bridge.app
import fusionkit_cli.common
from fusionkit_cli.main import cli

DEMO = Path(__file__).resolve().parent.parent / "configs" / "demo.yaml"


def test_a_server_builds_with_the_collector_off_and_serves_with_it_on(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, bool] = {}
    build = bridge.app.create_app

    def create_app(*args: Any, **kwargs: Any) -> Any:
        seen["building"] = gc.isenabled()
        return build(*args, **kwargs)

    def run(server: uvicorn.Server, *args: Any, **kwargs: Any) -> None:
        seen["serving"] = gc.isenabled()
        server.started = True  # as if it had served until told to stop

    monkeypatch.setattr(bridge.app, "create_app", create_app)
    monkeypatch.setattr(uvicorn.Server, "run", run)
    result = CliRunner().invoke(cli, ["serve-endpoint", "--config", str(DEMO), "--endpoint", "fast", "--port", "1"])
    assert result.exit_code == 0, result.output
    assert seen == {"building": False, "serving": True}
    assert gc.isenabled()


def test_any_other_command_runs_with_the_collector_on(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bool] = []
    load = fusionkit_cli.common.load_config

    def load_config(path: Any) -> Any:
        seen.append(gc.isenabled())
        return load(path)

    monkeypatch.setattr(fusionkit_cli.common, "load_config", load_config)
    result = CliRunner().invoke(cli, ["validate", str(DEMO)])
    assert result.exit_code == 0, result.output
    assert seen == [True] and gc.isenabled()


def test_the_callers_setting_is_restored() -> None:
    gc.disable()
    try:
        CliRunner().invoke(cli, ["--help"])
        assert not gc.isenabled()
    finally:
        gc.enable()
