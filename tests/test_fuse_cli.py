"""`fusionkit fuse`: with CliRunner for input handling, and as a real process against a real router."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from bench.procs import wait_healthy
from fusionkit_cli.main import cli
from tests.livesrv import free_port

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "configs" / "examples" / "trajectories.json"
DEMO = ROOT / "configs" / "demo.yaml"


def test_fuses_the_shipped_example_offline(tmp_path: Path) -> None:
    out = tmp_path / "answer.txt"
    result = CliRunner().invoke(cli, ["fuse", str(EXAMPLE), "--config", str(DEMO), "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "parse_date now raises InvalidDate" in result.stdout
    assert "judging (careful)" in result.stderr and "synthesizing" in result.stderr
    assert out.read_text().strip() == result.stdout.strip()


def test_json_record_and_prompt_override(tmp_path: Path) -> None:
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps(json.loads(EXAMPLE.read_text())["trajectories"]))
    result = CliRunner().invoke(
        cli, ["fuse", str(bare), "--config", str(DEMO), "--prompt", "fix dates", "--json", "--judge-model", "fast"]
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["judge_synthesis_record"]["metrics"]["judge_model_id"] == "fast"
    assert record["decision"] == "synthesize" and record["final_output"]
    assert record["synthesis_id"].startswith("synthesis_")
    assert "done: synthesize (judged_and_synthesized)" in result.stderr


def test_the_friendly_file_format_is_converted_to_the_wire_one(tmp_path: Path) -> None:
    friendly = {
        "prompt": "Fix the date bug.",
        "trajectories": [
            {
                "id": "a",
                "model": "coder-1",
                "steps": [{"reasoning": "look", "tool_call": {"name": "run_tests", "arguments": {"path": "t"}}}],
                "verification": {"status": "passed", "details": "48 passed"},
                "final_output": "wrapped date() in try/except",
            },
            {"final_output": "added a table", "verification": {"status": "partial", "details": "2 fail"}},
        ],
    }
    path = tmp_path / "friendly.json"
    path.write_text(json.dumps(friendly))
    result = CliRunner().invoke(cli, ["fuse", str(path), "--config", str(DEMO), "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["judge_synthesis_record"]["input_candidate_ids"] == ["a", "t2"]
    contributions = record["judge_synthesis_record"]["metrics"]["trajectory_contributions"]
    assert [(c["model_id"], c["verification_status"], c["step_count"]) for c in contributions] == [
        ("coder-1", "succeeded", 2),
        ("agent", "failed", 0),
    ]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"prompt": "x", "trajectories": [{"final_output": "a"}, {"steps": []}]}', "trajectories[1].final_output"),
        (
            '{"prompt": "x", "trajectories": [{"trajectory_id": "a", "model_id": "m", "status": "ok", '
            '"final_output": "a"}]}',
            "trajectories[0].status",
        ),
        (
            '{"prompt": "x", "trajectories": [{"id": "a", "final_output": "a"}, {"id": "a", "final_output": "b"}]}',
            "repeated: a",
        ),
        ('[{"final_output": "a"}]', "needs --prompt"),
        ("not json", "not a JSON file"),
    ],
)
def test_bad_input_exits_2_naming_index_and_field(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "in.json"
    path.write_text(content)
    result = CliRunner().invoke(cli, ["fuse", str(path), "--config", str(DEMO)])
    assert result.exit_code == 2 and expected in result.output and "Traceback" not in result.output


def test_needs_exactly_one_of_config_and_url() -> None:
    result = CliRunner().invoke(cli, ["fuse", str(EXAMPLE)])
    assert result.exit_code == 2 and "exactly one of --config" in result.output


def test_unknown_judge_and_failing_models(tmp_path: Path) -> None:
    unknown = CliRunner().invoke(cli, ["fuse", str(EXAMPLE), "--config", str(DEMO), "--judge-model", "ghost"])
    assert unknown.exit_code == 2 and "ghost" in unknown.output
    failing = tmp_path / "failing.yaml"
    failing.write_text("endpoints:\n  - {id: a, provider: mock, model: m, mock: {fail_rate: 1.0}}\n")
    result = CliRunner().invoke(cli, ["fuse", str(EXAMPLE), "--config", str(failing)])
    # The judge and synthesizer both fail: the verified trajectory's output is printed, said to be a
    # fallback, and the exit status says the fusion failed ...
    assert result.exit_code == 1 and "parse_date now raises InvalidDate" in result.stdout
    assert "FALLBACK: the judge and the synthesizer both failed" in result.stderr
    # ... unless the caller accepts a fallback.
    allowed = CliRunner().invoke(cli, ["fuse", str(EXAMPLE), "--config", str(failing), "--allow-fallback"])
    assert allowed.exit_code == 0 and allowed.stdout == result.stdout


def test_a_run_over_its_wall_clock_budget_exits_1(tmp_path: Path) -> None:
    slow = tmp_path / "slow.yaml"
    slow.write_text(
        "endpoints:\n  - {id: a, provider: mock, model: m, mock: {latency_ms: 20000}}\nbudget: {wall_clock_s: 0.2}\n"
    )
    result = CliRunner().invoke(cli, ["fuse", str(EXAMPLE), "--config", str(slow)])
    assert result.exit_code == 1, result.output
    assert "budget.wall_clock_s=0.2" in result.stderr and "Traceback" not in result.output
    assert result.stdout == ""


def _fuse_process(url: str, *args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "FUSIONKIT_API_KEY"}
    if key is not None:
        env["FUSIONKIT_API_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "fusionkit_cli.main", "fuse", str(EXAMPLE), "--url", url, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


@pytest.mark.slow
def test_real_process_against_a_real_router(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "panel.yaml"
    panel = yaml.safe_load(DEMO.read_text())
    panel["server"].update({"run_store": str(tmp_path / "runs.sqlite3"), "api_key_env": "FK_TEST_ROUTER_KEY"})
    config.write_text(yaml.safe_dump(panel))
    router = subprocess.Popen(
        [sys.executable, "-m", "fusionkit_cli.main", "serve", "--config", str(config), "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "FK_TEST_ROUTER_KEY": "test-key"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, router)
        result = _fuse_process(url, "--json", key="test-key")
        assert result.returncode == 0, result.stderr
        record = json.loads(result.stdout)
        assert "parse_date now raises InvalidDate" in record["final_output"]
        assert "sending 3 trajectories" in result.stderr
        # The fusion was recorded as a run of the router, under its synthesis id.
        runs = CliRunner().invoke(cli, ["runs", "show", record["synthesis_id"], "--config", str(config)])
        assert runs.exit_code == 0 and record["synthesis_id"] in runs.output, runs.output

        unauthorised = _fuse_process(url, key="wrong-key")
        assert unauthorised.returncode == 1 and "401" in unauthorised.stderr and not unauthorised.stdout
        bad = _fuse_process(url, "--judge-model", "ghost", key="test-key")
        assert bad.returncode == 2 and "judge_model 'ghost'" in bad.stderr and "careful" in bad.stderr
        down = _fuse_process(f"http://127.0.0.1:{free_port()}", key="test-key")
        assert down.returncode == 1 and "cannot reach the router" in down.stderr and "Traceback" not in down.stderr
    finally:
        router.terminate()
        router.wait(timeout=10)
