"""Seed conformance: every `/v1/fusion/*` route (and health, models, chat) answers as fusionkit-server 0.1.1.

The seed's answers were recorded once by `make seed-fixtures` (tests/seed/record.py, the published
0.1.1 server in its own venv) over the stand-in upstream in tests/seed/standin.py. Here the same
steps (tests/seed/scenarios.py) go to our router over the same stand-in, and each answer is held
to the seed's: status, every key path with its JSON type, enum values, and the values a step names.
No network: the fixtures are committed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from server.app import create_app
from server.config import PanelConfig
from tests.livesrv import LiveServer
from tests.seed.keypaths import compare
from tests.seed.scenarios import ENDPOINTS, STEPS, Exchange, Step, pick, request, run_request, run_steps
from tests.seed.standin import StandinApp

FIXTURES = Path(__file__).resolve().parent / "seed" / "fixtures"
ENUMS: dict[str, list[str]] = json.loads((FIXTURES / "manifest.json").read_text(encoding="utf-8"))["enums"]
STEP_NAMES = [s.name for s in STEPS if isinstance(s, Step)]
WORD_COUNT = {
    "type": "function",
    "function": {
        "name": "word_count",
        "side_effects": "read_only",
        "parameters": {"type": "object", "properties": {"text": {"type": "string"}}},
    },
}
PAUSED = run_request(
    "req-paused", tool_policy="external_pause", tools=[WORD_COUNT], tool_execution={"dedupe_read_only": True}
)


def our_config(tmp_path: Path, upstream: str) -> PanelConfig:
    """Our router over the same upstream, with the same endpoint ids and roles as the seed's config."""
    return PanelConfig.model_validate(
        {
            "endpoints": [
                {"id": endpoint_id, "provider": "openai-compatible", "model": model, "base_url": upstream + "/v1"}
                for endpoint_id, model in ENDPOINTS
            ],
            "default_model": ENDPOINTS[0][0],
            "judge_model": ENDPOINTS[1][0],
            "default_mode": "router",
            "panel_models": [endpoint_id for endpoint_id, _ in ENDPOINTS],
            "server": {"run_store": str(tmp_path / "runs.sqlite3")},
        }
    )


@pytest.fixture(scope="module")
def answers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Exchange]]:
    """Our answer to every step, in the seed's order (later steps use earlier answers' ids)."""
    tmp_path = tmp_path_factory.mktemp("seed")
    with LiveServer(StandinApp()) as upstream, LiveServer(create_app(our_config(tmp_path, upstream.url))) as router:

        def paused(context: dict[str, str]) -> None:
            # A run whose members call a tool: a plain create answers as soon as the run pauses.
            created = request(router.url, "POST", "/v1/fusion/runs", PAUSED, {"Idempotency-Key": "paused"})
            assert created.status == 200 and created.body["state"] == "requires_action", created.body
            action = created.body["inspection"]["requires_action"]
            context.update(
                paused_run=created.body["run_id"],
                paused_candidate=action["candidate_id"],
                paused_tool_call=action["tool_call_id"],
                paused_tool=action["plan"]["tool_name"],
            )

        exchanges = run_steps(router.url, STEPS, hooks={"paused": paused})
        # The paused run goes on after its tool result: its replay waits for the end, so nothing is left running.
        finished = request(router.url, "POST", "/v1/fusion/runs", PAUSED, {"Idempotency-Key": "paused"})
        assert finished.body["state"] == "completed", finished.body
        yield {e.name: e for e in exchanges}


def seed_answer(name: str) -> dict[str, Any]:
    [path] = FIXTURES.glob(f"[0-9][0-9]-{name}.json")
    return dict(json.loads(path.read_text(encoding="utf-8")))


def test_every_step_has_a_fixture() -> None:
    recorded = sorted(p.name.split("-", 1)[1].removesuffix(".json") for p in FIXTURES.glob("[0-9][0-9]-*.json"))
    assert recorded == sorted(STEP_NAMES), "re-record with `make seed-fixtures`"


@pytest.mark.parametrize("name", STEP_NAMES)
def test_answers_as_the_seed(answers: dict[str, Exchange], name: str) -> None:
    step = next(s for s in STEPS if isinstance(s, Step) and s.name == name)
    seed, ours = seed_answer(name), answers[name]
    assert ours.status == seed["status"], (ours.status, ours.body)
    if "frames" in seed:
        assert ours.frames is not None and ours.frames[-1] == "[DONE]", ours.frames
        for pick_frame in (_first, _finish):
            problems = compare(pick_frame(seed["frames"]), pick_frame(ours.frames), ENUMS)
            assert not problems, "\n".join(problems)
        return
    problems = compare(seed["body"], ours.body, ENUMS, step.same)
    known = [p for p in problems if p.split(":")[0] in step.known]
    assert len(known) == len(step.known), f"a known difference is gone: remove it from the step ({known})"
    unknown = [p for p in problems if p not in known]
    assert not unknown, "\n".join(unknown)


def _first(frames: list[Any]) -> Any:
    return frames[0]


def _finish(frames: list[Any]) -> Any:
    return next(f for f in frames if isinstance(f, dict) and f.get("choices") and f["choices"][0]["finish_reason"])


def test_a_missing_key_path_fails_the_comparison() -> None:
    seed = seed_answer("runs_get")["body"]
    ours = {k: v for k, v in seed.items() if k != "event_cursor"}
    assert compare(seed, ours, ENUMS) == ["event_cursor: missing (the seed answers number)"]
    [odd] = compare(seed, {**seed, "state": "done"}, ENUMS)
    assert odd.startswith("state: ['done'] not among the seed's values")
    assert pick(seed, "run_id") == seed["run_id"]
