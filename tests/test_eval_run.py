"""`fusionkit eval` end to end: real routers (in-process and at a URL), real mock members and stand-in
upstreams, the report and its links to run ids, `--max-cost`, replay and `fusionkit runs rejudge`."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import openai
import pytest
from click.testing import CliRunner, Result

from bench.upstream import JUDGE_ANALYSIS as ANALYSIS
from fusionkit_cli.config_loader import load_config
from fusionkit_cli.main import cli
from server.app import create_app
from server.store import RunStore
from tests.standins.openai_standin import create_openai_standin
from tests.standins.recorder import StandinState

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "configs" / "eval" / "tiny.jsonl"
MOCK_PANEL = ROOT / "configs" / "eval" / "mock-panel.yaml"


def run_eval(*args: str) -> Result:
    return CliRunner().invoke(cli, ["eval", *args])


def report(out: Path) -> dict[str, Any]:
    return dict(json.loads((out / "report.json").read_text()))


def arm_stats(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["label"]: a for a in data["summary"]["arms"]}


def stored_runs(store: Path, run_ids: list[str]) -> dict[str, str]:
    """run id -> state, read straight from the run store."""

    async def read() -> dict[str, str]:
        runs = RunStore(store)
        try:
            records = [await runs.get_run(r) for r in run_ids]
            return {r.run_id: r.state for r in records if r is not None}
        finally:
            await runs.close()

    return asyncio.run(read())


def first_tasks(tmp_path: Path, count: int) -> Path:
    path = tmp_path / "tasks.jsonl"
    path.write_text("".join(TINY.read_text().splitlines(keepends=True)[:count]))
    return path


@pytest.fixture
def at_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped eval configs name their task file relative to the repository root."""
    monkeypatch.chdir(ROOT)


@pytest.mark.slow
def test_offline_eval_writes_a_report_whose_numbers_link_to_stored_runs(tmp_path: Path, at_root: None) -> None:
    out = tmp_path / "out"
    result = run_eval(str(TINY), "--config", str(MOCK_PANEL), "--out", str(out), "--concurrency", "8")
    assert result.exit_code == 0, result.output
    assert "tasks 30/30 · answers 120/120" in result.stderr and f"report: {out / 'report.md'}" in result.stdout
    data = report(out)
    arms = arm_stats(data)
    assert list(arms) == [
        "mock-panel · panel",
        "mock-panel · generalist alone",
        "mock-panel · scholar alone",
        "mock-panel · coder alone",
    ]
    assert len(data["outcomes"]) == 120 and data["summary"]["trials"] == 30 and data["stopped"] is None
    for label, stats in arms.items():
        mine = [o for o in data["outcomes"] if o["arm"] == label]
        assert stats["passed"] == sum(o["passed"] for o in mine) and stats["n"] == 30
        assert stats["ci95"][0] <= stats["accuracy"] <= stats["ci95"][1]
        assert sorted(stats["run_ids"]) == sorted(o["run_id"] for o in mine)
    # Every outcome is a completed run in the eval's own run store.
    run_ids = [o["run_id"] for o in data["outcomes"]]
    assert set(stored_runs(out / "runs" / "mock-panel.sqlite3", run_ids).values()) == {"completed"}
    assert len(set(run_ids)) == 120
    # The scorers did their work: a known Python answer passed its tests in the sandbox, "I don't know" did not.
    python = [o for o in data["outcomes"] if o["category"] == "python"]
    assert any(o["passed"] and o["reason"].endswith("tests passed") for o in python)
    assert any(not o["passed"] and "SyntaxError" in o["reason"] for o in python)
    # report.md: every figure links to a section that exists and lists run ids.
    markdown = (out / "report.md").read_text()
    links = set(re.findall(r"\]\(#(list-\d+)\)", markdown))
    anchors = set(re.findall(r'<a id="(list-\d+)"></a>', markdown))
    assert links and links == anchors
    assert all(f"`{run_id}`" in markdown for run_id in run_ids)
    assert "![Quality against cost and latency" in markdown and "## Paired comparisons" in markdown
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "tasks.jsonl").read_text() == TINY.read_text()


@pytest.mark.slow
def test_a_running_router_gives_the_same_results_as_the_in_process_one(
    tmp_path: Path, at_root: None, live_server: Any
) -> None:
    tasks = first_tasks(tmp_path, 12)
    local = run_eval(str(tasks), "--config", str(MOCK_PANEL), "--out", str(tmp_path / "local"))
    assert local.exit_code == 0, local.output
    router = live_server(create_app(load_config(MOCK_PANEL), store_path=tmp_path / "remote.sqlite3"))
    remote = run_eval(
        str(tasks), "--url", router.url, "--members", "generalist,scholar,coder", "--out", str(tmp_path / "remote")
    )
    assert remote.exit_code == 0, remote.output

    def accuracy(out: Path) -> dict[str, float]:
        return {label.split(" · ", 1)[1]: a["accuracy"] for label, a in arm_stats(report(out)).items()}

    assert accuracy(tmp_path / "local") == accuracy(tmp_path / "remote")
    remote_runs = [o["run_id"] for o in report(tmp_path / "remote")["outcomes"]]
    assert len(stored_runs(tmp_path / "remote.sqlite3", remote_runs)) == len(remote_runs) == 48
    assert (
        f"[`{remote_runs[0]}`]({router.url}/v1/fusion/runs/{remote_runs[0]}/inspect)"
        in (tmp_path / "remote" / "report.md").read_text()
    )


def test_max_cost_stops_the_eval_with_a_partial_report(tmp_path: Path, at_root: None) -> None:
    out = tmp_path / "out"
    # One task costs about $0.0005 over its four arms (the members are priced in mock-panel.yaml).
    result = run_eval(
        str(TINY), "--config", str(MOCK_PANEL), "--out", str(out), "--concurrency", "1", "--max-cost", "0.001"
    )
    assert result.exit_code == 0, result.output
    assert "--max-cost 0.001 USD reached" in result.stderr
    data = report(out)
    assert data["stopped"].startswith("--max-cost 0.001 USD reached")
    spent = sum(o["cost"] for o in data["outcomes"])
    assert spent >= 0.001 and len(data["outcomes"]) < 120
    complete = {o["task_id"] for o in data["outcomes"]}
    assert 0 < data["summary"]["trials"] <= len(complete) < 30 and data["summary"]["planned_trials"] == 30
    # In order, task by task: everything asked is from the first tasks of the file.
    asked = [json.loads(line)["id"] for line in TINY.read_text().splitlines()][: len(complete)]
    assert complete == set(asked)
    assert "stopped early: --max-cost 0.001 USD reached" in (out / "report.md").read_text()


def _standins(live_server: Any, answers: dict[str, str]) -> tuple[dict[str, StandinState], dict[str, str]]:
    states, urls = {}, {}
    for name, answer in answers.items():
        states[name] = StandinState(answer=answer)
        urls[name] = live_server(create_openai_standin(states[name])).url + "/v1"
    return states, urls


def _standin_config(tmp_path: Path, urls: dict[str, str], **extra: Any) -> Path:
    config = {
        "endpoints": [
            {"id": name, "provider": "openai-compatible", "model": "standin-1", "base_url": url}
            for name, url in urls.items()
        ],
        **extra,
    }
    path = tmp_path / "standins.yaml"
    path.write_text(json.dumps(config))
    return path


def test_replay_rejudges_recorded_candidates_without_asking_the_panel(tmp_path: Path, live_server: Any) -> None:
    answers = {"a": "Paris", "b": "Lyon", "c": "Paris", "judge": ANALYSIS, "synth": "Paris", "other": "Lyon"}
    states, urls = _standins(live_server, answers)
    config = _standin_config(
        tmp_path,
        urls,
        panel_models=["a", "b", "c"],
        judge_model="judge",
        synthesizer_model="synth",
        default_mode="panel",
    )
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(
        "".join(
            json.dumps(
                {"id": f"t{i}", "prompt": f"Capital of France? ({i})", "scorer": {"type": "exact", "expected": "Paris"}}
            )
            + "\n"
            for i in range(3)
        )
    )
    out = tmp_path / "out"
    assert run_eval(str(tasks), "--config", str(config), "--out", str(out)).exit_code == 0
    asked = {name: len(state.requests) for name, state in states.items()}
    assert asked == {"a": 6, "b": 6, "c": 6, "judge": 3, "synth": 3, "other": 0}  # panel + alone; judge + synth

    # As if the original had been stopped by Ctrl-C after answering everything: the replay runs to its end all
    # the same, so it exits 0 and says it finished; the original's stop is a note of its report.
    original = report(out)
    (out / "report.json").write_text(json.dumps({**original, "stopped": "interrupted by SIGINT"}))
    replayed = run_eval(
        "--replay", str(out), "--judge", "judge", "--synthesizer", "other", "--out", str(tmp_path / "r")
    )
    assert replayed.exit_code == 0, replayed.output
    assert report(tmp_path / "r")["stopped"] is None
    assert "the replayed eval had stopped early (interrupted by SIGINT)" in (tmp_path / "r" / "report.md").read_text()
    now = {name: len(state.requests) for name, state in states.items()}
    # Counted at the upstreams: no panel member was asked again; the judge and the new synthesizer once per run.
    assert now == {**asked, "judge": 6, "other": 3}
    assert all("Capital of France" in json.dumps(r) for r in states["other"].requests)
    data = report(tmp_path / "r")
    arms = arm_stats(data)
    original, again = arms["standins · panel"], arms["standins · panel (judge judge, synthesizer other)"]
    assert (original["accuracy"], again["accuracy"]) == (1.0, 0.0)
    (vs,) = [c for c in data["summary"]["comparisons"] if c["b"] == again["label"]]
    assert (vs["a_only"], vs["b_only"], vs["p_value"]) == (3, 0, 0.25)
    # The rejudged runs are in the original store, recorded as runs of their own.
    assert set(stored_runs(out / "runs" / "standins.sqlite3", again["run_ids"]).values()) == {"completed"}
    assert not set(again["run_ids"]) & set(original["run_ids"])


def test_runs_rejudge_asks_only_judge_and_synthesizer(tmp_path: Path, live_server: Any) -> None:
    states, urls = _standins(
        live_server, {"a": "Paris", "b": "Lyon", "judge": ANALYSIS, "synth": "Paris", "other": "Rome"}
    )
    config = _standin_config(tmp_path, urls, panel_models=["a", "b"], judge_model="judge", synthesizer_model="synth")
    store = tmp_path / "runs.sqlite3"
    router = live_server(create_app(load_config(config), store_path=store))
    client = openai.OpenAI(base_url=router.url + "/v1", api_key="x", max_retries=0)
    answer = client.chat.completions.create(model="fusionkit/panel", messages=[{"role": "user", "content": "Capital?"}])
    run_id = (answer.model_extra or {})["fusionkit"]["run_id"]
    before = {name: len(state.requests) for name, state in states.items()}

    remote = CliRunner().invoke(
        cli, ["runs", "rejudge", run_id, "--url", router.url, "--synthesizer", "other", "--json"]
    )
    assert remote.exit_code == 0, remote.output
    record = json.loads(remote.stdout)
    assert record["text"] == "Rome" and record["run_id"] != run_id and record["run_id"].startswith("run_")
    assert {n: len(s.requests) for n, s in states.items()} == {**before, "judge": before["judge"] + 1, "other": 1}
    # The same through an in-process router over the same store.
    local = CliRunner().invoke(cli, ["runs", "rejudge", run_id, "--config", str(config), "--store", str(store)])
    assert local.exit_code == 0, local.output
    assert local.stdout.strip() == "Paris" and f"{run_id} judged again" in local.stderr

    for args, expected in (
        (["run_000000000000000000000000", "--url", router.url], "no run 'run_000000000000000000000000'"),
        ([run_id, "--url", router.url, "--judge", "nobody"], "judge_model 'nobody' is not an endpoint; allowed: a, b"),
        ([run_id, "--url", router.url, "--config", str(config)], "give exactly one of --config FILE"),
    ):
        failed = CliRunner().invoke(cli, ["runs", "rejudge", *args])
        assert failed.exit_code == 2 and expected in failed.output and "Traceback" not in failed.output


def test_runs_rejudge_reads_the_postgresql_store_fusionkit_run_store_or_store_names(
    tmp_path: Path, live_server: Any, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, urls = _standins(live_server, {"a": "Paris", "b": "Lyon", "judge": ANALYSIS, "synth": "Paris", "other": "Rome"})
    config = _standin_config(tmp_path, urls, panel_models=["a", "b"], judge_model="judge", synthesizer_model="synth")
    router = live_server(create_app(load_config(config), store_path=pg_url))
    client = openai.OpenAI(base_url=router.url + "/v1", api_key="x", max_retries=0)
    answer = client.chat.completions.create(model="fusionkit/panel", messages=[{"role": "user", "content": "Capital?"}])
    run_id = (answer.model_extra or {})["fusionkit"]["run_id"]
    monkeypatch.chdir(tmp_path)  # the config names no store: its default file is not here, the database is the store
    monkeypatch.setenv("FUSIONKIT_RUN_STORE", pg_url)
    by_variable = CliRunner().invoke(
        cli, ["runs", "rejudge", run_id, "--config", str(config), "--synthesizer", "other"]
    )
    assert by_variable.exit_code == 0, by_variable.output
    assert by_variable.stdout.strip() == "Rome"
    monkeypatch.delenv("FUSIONKIT_RUN_STORE")
    by_flag = CliRunner().invoke(cli, ["runs", "rejudge", run_id, "--config", str(config), "--store", pg_url])
    assert by_flag.exit_code == 0, by_flag.output
    assert by_flag.stdout.strip() == "Paris"


def test_judge_tasks_are_graded_by_the_grader_whose_reasoning_is_kept(tmp_path: Path, live_server: Any) -> None:
    states, urls = _standins(live_server, {"poet": "Roses are red, violets are blue.", "grader": ""})
    config = _standin_config(tmp_path, urls, panel_models=["poet"], default_mode="single")
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(
        json.dumps({"id": "poem", "prompt": "A two-line poem.", "scorer": {"type": "judge", "rubric": "It rhymes."}})
        + "\n"
    )
    states["grader"].answer = json.dumps({"reasoning": "red/blue is a slant rhyme; good enough.", "pass": True})
    out = tmp_path / "out"
    result = run_eval(str(tasks), "--config", str(config), "--modes", "single", "--grader", "grader", "--out", str(out))
    assert result.exit_code == 0, result.output
    graded = next(o for o in report(out)["outcomes"] if o["arm"] == "standins · poet alone")
    assert graded["passed"] and graded["details"]["reasoning"] == "red/blue is a slant rhyme; good enough."
    asked = json.dumps(states["grader"].requests[-1])
    assert "It rhymes." in asked and "Roses are red" in asked
    assert stored_runs(out / "runs" / "standins.sqlite3", [graded["details"]["grader_run_id"]])

    states["grader"].answer = "It rhymes, I suppose."
    broken = run_eval(
        str(tasks), "--config", str(config), "--modes", "single", "--grader", "grader", "--out", str(tmp_path / "b")
    )
    assert broken.exit_code == 0, broken.output
    outcomes = report(tmp_path / "b")["outcomes"]
    assert all(
        not o["passed"] and o["reason"].startswith("scorer error: the grader's reply is not JSON") for o in outcomes
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["TASKS", "--config", "CONFIG", "--modes", "panel,best"], "--modes: found 'panel,best'; allowed"),
        (["TASKS"], "give at least one --config FILE"),
        (["--config", "CONFIG"], "give the task file"),
        (["TASKS", "--config", "nope.yaml"], "nope.yaml: file not found"),
        (["TASKS", "--url", "localhost:8080"], "--url: found 'localhost:8080'"),
        (["TASKS", "--config", "CONFIG", "--judge", "x"], "--judge and --synthesizer go with --replay"),
        (["TASKS", "--config", "CONFIG", "--members", "nobody"], "--members: nobody not an endpoint of mock-panel"),
        (["--replay", "NOWHERE"], "report.json: not found"),
        (["BAD", "--config", "CONFIG"], "bad.jsonl:2: scorer.expected: required key is missing"),
    ],
)
def test_bad_input_exits_2_naming_what_is_wrong(tmp_path: Path, at_root: None, args: list[str], expected: str) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(TINY.read_text().splitlines()[0] + '\n{"id": "x", "prompt": "q", "scorer": {"type": "exact"}}\n')
    values = {
        "TASKS": str(first_tasks(tmp_path, 2)),
        "CONFIG": str(MOCK_PANEL),
        "BAD": str(bad),
        "NOWHERE": str(tmp_path),
    }
    result = run_eval(*[values.get(a, a) for a in args], "--out", str(tmp_path / "out"))
    assert result.exit_code == 2, result.output
    assert expected in result.output and "Traceback" not in result.output


def _knowing_config(tmp_path: Path, name: str, tasks: Path, seeds: list[int], accuracy: float) -> Path:
    members = [
        {
            "id": f"m{i}",
            "provider": "mock",
            "model": f"mock-{seed}",
            "mock": {"seed": seed, "knows": str(tasks), "accuracy": accuracy},
        }
        for i, seed in enumerate(seeds)
    ]
    referee = {"id": "referee", "provider": "mock", "model": "mock-referee", "mock": {"knows": str(tasks)}}
    config = {
        "endpoints": [*members, referee],
        "panel_models": [m["id"] for m in members],
        "judge_model": "referee",
        "default_mode": "panel",
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(json.dumps(config))
    return path


@pytest.mark.slow
def test_simulated_panels_land_where_probability_says(tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(
        "".join(
            json.dumps(
                {"id": f"q{i}", "prompt": f"What is {i} + {i}?", "scorer": {"type": "exact", "expected": str(2 * i)}}
            )
            + "\n"
            for i in range(300)
        )
    )
    independent = _knowing_config(tmp_path, "independent", tasks, [1, 2, 3], 0.7)
    identical = _knowing_config(tmp_path, "identical", tasks, [5, 5, 5], 0.7)
    out = tmp_path / "out"
    result = run_eval(
        str(tasks), "--config", str(independent), "--config", str(identical), "--out", str(out), "--concurrency", "16"
    )
    assert result.exit_code == 0, result.output
    data = report(out)
    arms = arm_stats(data)
    # Three independent members right 70 % of the time, fused by majority: 0.7³ + 3·0.7²·0.3 = 0.784.
    for member in ("m0", "m1", "m2"):
        low, high = arms[f"independent · {member} alone"]["ci95"]
        assert low <= 0.7 <= high
    low, high = arms["independent · panel"]["ci95"]
    assert low <= 0.784 <= high
    # Trial by trial, the fused answer is right exactly when at least two members alone were.
    trials: dict[tuple[str, int], dict[str, bool]] = {}
    for o in data["outcomes"]:
        if o["arm"].startswith("independent"):
            trials.setdefault((o["task_id"], o["repeat"]), {})[o["arm"]] = o["passed"]
    for results in trials.values():
        members_right = sum(passed for arm, passed in results.items() if arm.endswith("alone"))
        assert results["independent · panel"] == (members_right >= 2)
    (config,) = [c for c in data["summary"]["configs"] if c["name"] == "independent"]
    # Independent errors: the failures are uncorrelated (phi's standard error here is about 0.06).
    assert all(abs(k["phi"]) < 0.2 for k in config["failure_correlation"])
    # Identical members always agree: fusion gains nothing, the oracle is no better, failures coincide.
    member_accuracy = arms["identical · m0 alone"]["accuracy"]
    assert arms["identical · panel"]["accuracy"] == member_accuracy
    (same,) = [c for c in data["summary"]["configs"] if c["name"] == "identical"]
    assert same["oracle"]["accuracy"] == member_accuracy
    assert all(k["phi"] == pytest.approx(1.0) for k in same["failure_correlation"])


@pytest.mark.slow
def test_shipped_task_set_and_demo_config_run_offline(tmp_path: Path, at_root: None) -> None:
    """The demo config's members know nothing of the tasks; the eval still runs, scores and reports."""
    out = tmp_path / "demo"
    result = run_eval(
        "configs/eval/tiny.jsonl", "--config", "configs/demo.yaml", "--out", str(out), "--concurrency", "16"
    )
    assert result.exit_code == 0, result.output
    data = report(out)
    assert len(data["outcomes"]) == 120 and data["summary"]["trials"] == 30
    assert all(o["run_id"] for o in data["outcomes"]) and (out / "report.md").exists()
