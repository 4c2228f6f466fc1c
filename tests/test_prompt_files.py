"""Prompts one can change: `fusionkit prompts dump`, overrides from the config, the working
directory and the request (in that order of precedence, the request first), errors that name the
file and key, and the sha256 of the prompt each run used."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
from click.testing import CliRunner

from fusionkit_cli.main import cli
from server.app import create_app
from server.prompt_files import ROLES, builtin_text
from tests.router_helpers import demo_endpoints, panel_config
from tests.standins.openai_standin import create_openai_standin
from tests.standins.recorder import StandinState

QUESTION = [{"role": "user", "content": "Compare two ways to cache a web page"}]
ANALYSIS = '{"ranking": ["c1", "c2"], "best_candidate_id": "c1"}'


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _standin(live_server: Any, endpoint_id: str, state: StandinState) -> dict[str, Any]:
    upstream = live_server(create_openai_standin(state))
    return {"id": endpoint_id, "provider": "openai-compatible", "model": endpoint_id, "base_url": upstream.url + "/v1"}


def _write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_dump_writes_the_builtins_and_keeps_what_is_there(tmp_path: Path) -> None:
    target = tmp_path / "prompts"
    first = CliRunner().invoke(cli, ["prompts", "dump", str(target)])
    assert first.exit_code == 0, first.output
    assert {p.name: p.read_text() for p in target.iterdir()} == {f"{r}.md": builtin_text(r) for r in ROLES}
    (target / "judge.md").write_text("mine")
    again = CliRunner().invoke(cli, ["prompts", "dump", str(target)])
    assert again.exit_code == 2 and "already there; pass --force" in again.output
    assert (target / "judge.md").read_text() == "mine"
    forced = CliRunner().invoke(cli, ["prompts", "dump", "--force", str(target)])
    assert forced.exit_code == 0 and (target / "judge.md").read_text() == builtin_text("judge")


def test_request_beats_config_beats_working_directory_beats_builtin(
    tmp_path: Path, live_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / ".fusionkit" / "prompts" / "judge.md", "Judge from the working directory.")
    _write(tmp_path / ".fusionkit" / "prompts" / "synthesizer.md", "Synthesizer from the working directory.")
    configured = _write(tmp_path / "mine" / "synth.md", "Synthesizer from the config.")
    judged, written = StandinState(answer=ANALYSIS), StandinState(answer="The fused answer.")
    endpoints = [*demo_endpoints(), _standin(live_server, "judge", judged), _standin(live_server, "synth", written)]
    config = panel_config(
        tmp_path,
        endpoints,
        panel_models=["fast", "careful"],
        judge_model="judge",
        synthesizer_model="synth",
        fusion={"prompts": {"synthesizer": configured}},
    )
    server = live_server(create_app(config))
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)

    def run(**fusion: Any) -> dict[str, Any]:
        reply = client.chat.completions.create(
            model="fusionkit/panel", messages=QUESTION, extra_body={"fusion": fusion}
        )
        inspection = httpx2.get(f"{server.url}/v1/fusion/runs/{reply.model_extra['fusionkit']['run_id']}/inspect")
        prompts: dict[str, Any] = inspection.json()["fusionkit"]["prompts"]
        return prompts

    used = run(verify=True)
    assert judged.requests[0]["messages"][0]["content"] == "Judge from the working directory."
    assert written.requests[0]["messages"][0]["content"] == "Synthesizer from the config."
    assert judged.requests[1]["messages"][0]["content"] == builtin_text("verifier")  # nothing overrides it
    assert used == {
        "judge": {
            "role": "judge",
            "source": "workdir:.fusionkit/prompts/judge.md",
            "sha256": _sha("Judge from the working directory."),
        },
        "synthesizer": {
            "role": "synthesizer",
            "source": f"config:{configured}",
            "sha256": _sha("Synthesizer from the config."),
        },
        "verifier": {"role": "verifier", "source": "builtin", "sha256": _sha(builtin_text("verifier"))},
    }

    used = run(prompts={"judge": "Judge from the request.", "synthesizer": "Synthesizer from the request."})
    assert judged.requests[-1]["messages"][0]["content"] == "Judge from the request."
    assert written.requests[-1]["messages"][0]["content"] == "Synthesizer from the request."
    assert used["judge"] == {"role": "judge", "source": "request", "sha256": _sha("Judge from the request.")}
    # The fences are the engine's: a prompt that never mentions them still gets them declared.
    assert (
        "Only lines with this exact fence code open or close a fence" in judged.requests[-1]["messages"][1]["content"]
    )


def test_the_agent_step_takes_its_prompt_from_the_config(tmp_path: Path, live_server: Any) -> None:
    stepped = StandinState(answer="I will fix the parser.")
    agent = _write(tmp_path / "agent.md", "You take the next step; weigh the proposals.")
    config = panel_config(
        tmp_path,
        [_standin(live_server, "judge", stepped)],
        judge_model="judge",
        fusion={"prompts": {"agent": agent}},
    )
    server = live_server(create_app(config))
    trajectory = {"trajectory_id": "t1", "model_id": "m", "status": "succeeded", "final_output": "Patched it."}
    body = {"messages": QUESTION, "trajectories": [trajectory]}
    response = httpx2.post(f"{server.url}/v1/fusion/trajectory:step", json=body)
    assert response.status_code == 200, response.text
    reference = stepped.requests[0]["messages"][0]
    assert reference["role"] == "system" and reference["content"].startswith("You take the next step")
    assert "Patched it." in reference["content"]


@pytest.mark.parametrize(
    ("prompts", "expected"),
    [
        ({"judge": "missing.md"}, ["fusion.prompts.judge", "prompt file not found: missing.md"]),
        ({"jugde": "x.md"}, ["fusion.prompts.jugde: unknown key", "judge, synthesizer, verifier, agent"]),
        ({"judge": "empty.md"}, ["fusion.prompts.judge", "the prompt file empty.md is empty"]),
    ],
)
def test_a_prompt_file_that_cannot_be_used_is_a_config_error(
    prompts: dict[str, str], expected: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty.md").write_text("  \n")
    config = {"endpoints": [{"id": "m", "provider": "mock", "model": "mock-1"}], "fusion": {"prompts": prompts}}
    path = tmp_path / "panel.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 2 and result.output.startswith(f"error: {path}: ")
    for part in expected:
        assert part in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("prompts", "param"),
    [({"judge": ""}, "fusion.prompts.judge"), ({"jugde": "Judge well."}, "fusion.prompts.jugde")],
)
def test_a_request_prompt_that_cannot_be_used_is_a_400(
    prompts: dict[str, str], param: str, tmp_path: Path, live_server: Any
) -> None:
    server = live_server(create_app(panel_config(tmp_path, demo_endpoints())))
    body = {"model": "fusionkit/panel", "messages": QUESTION, "fusion": {"prompts": prompts}}
    response = httpx2.post(f"{server.url}/v1/chat/completions", json=body)
    assert response.status_code == 400 and response.json()["error"]["param"] == param
