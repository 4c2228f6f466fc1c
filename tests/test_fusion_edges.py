"""Fusion behaviour at its edges, each over OpenAI stand-ins whose answers the test sets: unanimity
after folding whitespace and case, a member that says nothing, a verifier that fails the answer,
a conversation too long for the judge, and keep-alive comments while the panel works."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
from click.testing import CliRunner

from fusionkit_cli.main import cli
from server.app import create_app
from server.store import RunStore
from tests.router_helpers import demo_endpoints, panel_config
from tests.standins.openai_standin import create_openai_standin
from tests.standins.recorder import StandinState

QUESTION = [{"role": "user", "content": "Compare two ways to cache a web page"}]


def _standin(live_server: Any, endpoint_id: str, state: StandinState) -> dict[str, Any]:
    upstream = live_server(create_openai_standin(state))
    return {"id": endpoint_id, "provider": "openai-compatible", "model": endpoint_id, "base_url": upstream.url + "/v1"}


def _ask(server: Any, **extra: Any) -> Any:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
    return client.chat.completions.create(model="fusionkit/panel", messages=QUESTION, **extra)


def test_answers_that_differ_only_in_whitespace_and_case_are_unanimous(tmp_path: Path, live_server: Any) -> None:
    a = _standin(live_server, "a", StandinState(answer="Use a CDN\tin front of the app."))
    b = _standin(live_server, "b", StandinState(answer="use a cdn in front\nof the APP."))
    server = live_server(create_app(panel_config(tmp_path, [a, b])))
    reply = _ask(server)
    assert reply.model_extra["fusionkit"]["decision"]["reason"] == "unanimous"
    assert reply.choices[0].message.content == "Use a CDN\tin front of the app."  # the first, as it was written


def test_answers_that_differ_in_a_word_are_not_unanimous(tmp_path: Path, live_server: Any) -> None:
    a = _standin(live_server, "a", StandinState(answer="Use a CDN in front of the app."))
    b = _standin(live_server, "b", StandinState(answer="Use a CDN behind the app."))
    server = live_server(create_app(panel_config(tmp_path, [a, b, *demo_endpoints()], panel_models=["a", "b"])))
    assert _ask(server).model_extra["fusionkit"]["decision"]["reason"] == "judged_and_synthesized"


def test_a_member_that_answers_nothing_is_dropped_with_its_reason(tmp_path: Path, live_server: Any) -> None:
    silent = _standin(live_server, "silent", StandinState(answer=""))
    server = live_server(create_app(panel_config(tmp_path, [silent, *demo_endpoints()], judge_model="careful")))
    meta = _ask(server).model_extra["fusionkit"]
    assert [(f["endpoint_id"], f["reason"]) for f in meta["failed_members"]] == [("silent", "returned an empty answer")]
    assert meta["candidate_model_ids"] == ["fast", "careful", "structured"]


def test_a_verifier_that_fails_the_answer_is_recorded_with_its_issues(tmp_path: Path, live_server: Any) -> None:
    verdict = StandinState(answer='{"verdict": "fail", "issues": ["the second step is wrong"]}')
    judge = _standin(live_server, "judge", verdict)
    config = panel_config(
        tmp_path,
        [*demo_endpoints(), judge],
        panel_models=["fast", "careful", "structured"],
        judge_model="judge",
        synthesizer_model="careful",
    )
    server = live_server(create_app(config))
    meta = _ask(server, extra_body={"fusion": {"verify": True}}).model_extra["fusionkit"]
    assert meta["verification"] == {
        "verifier_model_id": "judge",
        "passed": False,
        "issues": ["the second step is wrong"],
    }


def test_a_long_conversation_is_packed_for_the_judge_with_a_marker(tmp_path: Path, live_server: Any) -> None:
    state = StandinState(answer='{"ranking": ["c1"], "best_candidate_id": "c1"}')
    judge = {**_standin(live_server, "judge", state), "context_window": 8192}
    config = panel_config(tmp_path, [*demo_endpoints(), judge], panel_models=["fast", "careful"], judge_model="judge")
    server = live_server(create_app(config))
    history = []
    for i in range(60):
        history.append({"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i}: " + "x" * 900})
    history.append(QUESTION[0])
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
    client.chat.completions.create(model="fusionkit/panel", messages=history)
    judged = state.requests[0]["messages"][-1]["content"]
    assert "elided to fit the context window" in judged
    assert "turn 0:" in judged  # the head: where the conversation started
    assert "Compare two ways to cache a web page" in judged and "turn 59" in judged  # the newest are kept
    assert "turn 30:" not in judged  # the middle went
    assert len(judged) < 30_000  # far less than the 55,000 characters of the whole conversation


def test_a_stream_keeps_the_connection_alive_while_the_panel_works(tmp_path: Path, live_server: Any) -> None:
    slow = {"latency_ms": 700}
    config = panel_config(tmp_path, demo_endpoints(fast=slow, careful=slow, structured=slow))
    server = live_server(create_app(config, keepalive_s=0.1))
    with httpx2.stream(
        "POST",
        server.url + "/v1/chat/completions",
        json={"model": "fusionkit/panel", "messages": QUESTION, "stream": True},
    ) as response:
        lines = [line for line in response.iter_lines() if line]
    first_text = next(i for i, line in enumerate(lines) if '"content":"' in line)
    before = lines[:first_text]
    assert ": generating" in before and ": judging" in before and ": synthesizing" in before
    assert before.count(": keep-alive") >= 3  # while the 700 ms panel worked, every 100 ms
    assert not any(line.startswith("id:") for line in lines)  # comment-only frames, never with an id line
    run_id = response.headers["x-fusion-run-id"]

    async def state() -> str:
        async with RunStore(tmp_path / "runs.sqlite3") as store:
            run = await store.get_run(run_id)
            assert run is not None
            return run.state

    assert asyncio.run(state()) == "completed"


@pytest.mark.parametrize(
    ("panel", "expected"),
    [
        (
            "{quorum: 1, min_successful: 2}",
            "panel.quorum: found 1; allowed: at least panel.min_successful (2), or null for no quorum",
        ),
        ("{grace_ms: 50}", "panel.grace_ms: found 50.0; allowed: 0 without panel.quorum"),
    ],
)
def test_a_quorum_the_run_could_not_keep_is_a_config_error(tmp_path: Path, panel: str, expected: str) -> None:
    # A quorum under min_successful cuts members the run needs; a grace without a quorum would do nothing.
    path = tmp_path / "panel.yaml"
    path.write_text(f"endpoints:\n  - {{id: a, provider: mock, model: m}}\npanel: {panel}\n")
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 2 and f"{path}: {expected}" in result.output and "Traceback" not in result.output
