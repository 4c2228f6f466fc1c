"""The README's native-run example works as printed, against the demo config's router."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import httpx2
import pytest
from click.testing import CliRunner

from fusionkit_cli.config_loader import load_config
from fusionkit_cli.main import cli
from server.app import create_app

ROOT = Path(__file__).resolve().parent.parent
PRINTED_URL = "http://127.0.0.1:8080"


def readme_run_example() -> list[list[str]]:
    """The commands of the README's shell block that creates a run, continuation lines joined."""
    blocks = re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)
    [block] = [b for b in blocks if "/v1/fusion/runs " in b]
    lines = block.replace("\\\n", " ").splitlines()
    return [shlex.split(line, comments=True) for line in lines if line.strip() and not line.startswith("#")]


def curl(words: list[str], base_url: str) -> tuple[str, str, dict[str, str], str | None]:
    """(method, url, headers, body) of a curl command line."""
    url = next(w for w in words if w.startswith(PRINTED_URL)).replace(PRINTED_URL, base_url)
    headers = dict(words[i + 1].split(": ", 1) for i, w in enumerate(words) if w == "-H")
    body = next((words[i + 1] for i, w in enumerate(words) if w == "-d"), None)
    return ("POST" if body is not None else "GET"), url, headers, body


def test_the_readme_run_example_works_as_printed(
    tmp_path: Path, live_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the demo's run store is .fusionkit/runs.sqlite3, where `runs show` looks
    server = live_server(create_app(load_config(ROOT / "configs" / "demo.yaml")))
    create, events, show = readme_run_example()

    method, url, headers, body = curl(create, server.url)
    answer = httpx2.request(method, url, headers=headers, content=body, timeout=60)
    assert answer.status_code == 200, answer.text
    run = answer.json()
    assert (run["state"], run["status"], run["idempotency_outcome"], run["terminal_error"]) == (
        "completed",
        "succeeded",
        "created",
        None,
    )
    assert {"run_id", "trace_id", "event_cursor"} <= set(run)
    assert run["inspection"]["candidates"] and run["inspection"]["judge_synthesis_record"]
    assert run["inspection"]["final_output"]
    again = httpx2.request(method, url, headers=headers, content=body, timeout=60).json()
    assert (again["run_id"], again["idempotency_outcome"]) == (run["run_id"], "replayed")

    method, url, headers, body = curl([w.replace("RUN_ID", run["run_id"]) for w in events], server.url)
    steps = httpx2.request(method, url, headers=headers, timeout=10).json()["events"]
    assert steps[-1]["event_seq"] == run["event_cursor"]

    assert show[0] == ".venv/bin/fusionkit" and show[1:3] == ["runs", "show"]
    shown = CliRunner().invoke(cli, [*show[1:3], run["run_id"]])
    assert shown.exit_code == 0, shown.output
    assert "DECISION  synthesize" in shown.output and "FINAL ANSWER" in shown.output
