"""The requests the seed conformance suite sends, in order, and a stdlib runner for them.

    exchanges = run_steps(base_url, STEPS, hooks={"paused": pause_a_run})

Both servers get exactly these steps: `make seed-fixtures` records the seed's answers into
`fixtures/`, and tests/test_seed_conformance.py sends the same steps to our router and compares.
Placeholders like `{run}` in a path or body are filled from earlier answers (`capture`) or by a
hook (`Hook`), which each side implements its own way: the seed has no HTTP route that pauses a
run for a tool, so its hook pauses one in-process; ours starts a run whose member calls a tool.
"""

from __future__ import annotations

import contextlib
import json
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ENDPOINTS", "STEPS", "Exchange", "Hook", "Step", "fill", "run_steps"]

# The upstream endpoints both servers are configured with (ids, stand-in model names); the first
# is the default model, the second the judge and synthesizer.
ENDPOINTS = (("alpha", "standin-alpha"), ("beta", "standin-beta"), ("gamma", "standin-gamma"))

CONTRACT = {
    "schema": "fusion-run-request.v1",
    "schema_version": "v1",
    "schema_bundle_hash": "sha256:955da2d6891c88d4c40746a8206439e2dae2efc1e7ffefca015e84d4ce265671",
    "producer": "seed-conformance",
    "producer_version": "0.1.1",
    "producer_git_sha": "0" * 40,
    "created_at": "2026-01-01T00:00:00Z",
}
QUESTION = [{"role": "user", "content": "Compare two ways to cache HTTP responses."}]


def run_request(request_id: str, mode: str = "panel", **extra: Any) -> dict[str, Any]:
    """A FusionRunRequestV1 body exactly as a seed client sends it."""
    return {
        **CONTRACT,
        "request_id": request_id,
        "mode": mode,
        "messages": QUESTION,
        "sampling": {"temperature": 0.2, "max_tokens": 256},
        "verify": False,
        **extra,
    }


TRAJECTORIES = [
    {
        "trajectory_id": "agent-a",
        "model_id": "claude-coder",
        "status": "succeeded",
        "steps": [
            {"index": 0, "type": "reasoning", "text": "Reproduce the failure first."},
            {
                "index": 1,
                "type": "tool_call",
                "tool_name": "run_tests",
                "tool_call_id": "t1",
                "tool_input": '{"path": "tests"}',
            },
            {"index": 2, "type": "observation", "tool_call_id": "t1", "text": "48 passed", "is_error": False},
            {"index": 3, "type": "output", "text": "parse_date raises InvalidDate now."},
        ],
        "final_output": "parse_date now raises InvalidDate; the suite passes.",
        "diff": "--- a/src/dates.py\n+++ b/src/dates.py\n@@\n+class InvalidDate(ValueError): ...\n",
        "verification": {"status": "succeeded", "evidence": ["48 passed"], "exit_code": 0},
        "metadata": {"harness": "claude_code"},
    },
    {
        "trajectory_id": "agent-b",
        "model_id": "gpt-coder",
        "status": "failed",
        "steps": [{"index": 0, "type": "reasoning", "text": "Check month lengths in a table."}],
        "final_output": "Added a month-length table; leap days fail.",
        "verification": {"status": "failed", "evidence": ["2 failed"], "exit_code": 1},
    },
]
TASK = [{"role": "user", "content": "Fix parse_date so invalid dates raise InvalidDate."}]
RUN_TESTS = {
    "type": "function",
    "function": {"name": "run_tests", "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}},
}


@dataclass(frozen=True)
class Step:
    """One request.

    `same` names key paths whose values must equal the seed's (beyond the status); `expect` maps key
    paths to what each server's own context says they hold (`{"run_id": "{run}"}`: the run created
    earlier), checked on both sides, since ids differ from server to server.
    """

    name: str
    method: str
    path: str
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    capture: dict[str, str] = field(default_factory=dict)
    same: tuple[str, ...] = ()
    expect: dict[str, str] = field(default_factory=dict)
    # Known differences, each with its reason: the comparison must still find them (remove once fixed).
    known: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Hook:
    """A point where each side puts the context the next steps need (see the module docstring)."""

    name: str


@dataclass
class Exchange:
    """What one step sent and got: a JSON body, or for a stream the JSON of each `data:` frame."""

    name: str
    method: str
    path: str
    request: Any
    status: int
    body: Any = None
    frames: list[Any] | None = None

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


# A `{name}` the context does not hold stays as it is (tool inputs are JSON, with braces of their own).
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
UNKNOWN_RUN = "run_" + "0" * 32
NOT_WAITING = {"candidate_id": "c1", "tool_call_id": "call_x", "tool_name": "word_count", "output": "4"}

STEPS: list[Step | Hook] = [
    Step("health", "GET", "/health", same=("status",)),
    Step("models", "GET", "/v1/models"),
    Step(
        "chat_panel",
        "POST",
        "/v1/chat/completions",
        {"model": "fusionkit/panel", "messages": QUESTION},
        same=("object", "model", "fusionkit.state", "fusionkit.status", "fusionkit.candidate_count"),
    ),
    Step(
        "chat_self",
        "POST",
        "/v1/chat/completions",
        {"model": "fusionkit/self", "messages": QUESTION},
        same=("object", "model", "fusionkit.state", "fusionkit.status", "fusionkit.candidate_count"),
    ),
    Step(
        "chat_stream",
        "POST",
        "/v1/chat/completions",
        {"model": "fusionkit/panel", "messages": QUESTION, "stream": True},
    ),
    Step(
        "runs_create",
        "POST",
        "/v1/fusion/runs",
        run_request("req-1"),
        headers={"Idempotency-Key": "seed-key-1"},
        capture={"run": "run_id"},
        same=("state", "status", "idempotency_outcome", "inspection.state", "inspection.status"),
    ),
    Step(
        "runs_replay",
        "POST",
        "/v1/fusion/runs",
        run_request("req-1"),
        headers={"Idempotency-Key": "seed-key-1"},
        same=("state", "status", "idempotency_outcome"),
        expect={"run_id": "{run}"},
    ),
    Step(
        "runs_conflict",
        "POST",
        "/v1/fusion/runs",
        run_request("req-1", verify=True),
        headers={"Idempotency-Key": "seed-key-1"},
        same=("error.error_kind", "error.error_code", "error.retryable", "error.owner", "error.terminal_reason"),
    ),
    Step(
        "runs_get",
        "GET",
        "/v1/fusion/runs/{run}",
        same=("state", "status", "idempotency_key"),
        expect={"run_id": "{run}"},
    ),
    Step("runs_inspect", "GET", "/v1/fusion/runs/{run}/inspect", same=("state", "status"), expect={"run_id": "{run}"}),
    Step("runs_events", "GET", "/v1/fusion/runs/{run}/events", expect={"run_id": "{run}", "events.0.event_seq": "1"}),
    Step(
        "runs_events_after",
        "GET",
        "/v1/fusion/runs/{run}/events?after=1",
        expect={"run_id": "{run}", "events.0.event_seq": "2"},
    ),
    Step("runs_events_bad_after", "GET", "/v1/fusion/runs/{run}/events?after=-1"),
    Step("runs_get_404", "GET", f"/v1/fusion/runs/{UNKNOWN_RUN}", same=("error.error_code", "error.terminal_reason")),
    Step(
        "runs_inspect_404",
        "GET",
        f"/v1/fusion/runs/{UNKNOWN_RUN}/inspect",
        same=("error.error_code", "error.terminal_reason"),
    ),
    Step(
        "runs_events_404",
        "GET",
        f"/v1/fusion/runs/{UNKNOWN_RUN}/events",
        same=("error.error_code", "error.terminal_reason"),
    ),
    Step(
        "runs_create_single",
        "POST",
        "/v1/fusion/runs",
        run_request("req-single", mode="single"),
        capture={"single_run": "run_id"},
        same=("state", "status", "idempotency_outcome"),
    ),
    Step("runs_inspect_single", "GET", "/v1/fusion/runs/{single_run}/inspect", same=("state", "status")),
    Step(
        "runs_create_allowed",
        "POST",
        "/v1/fusion/runs",
        run_request("req-allowed", mode="single", tool_policy="allowed"),
        same=("state", "status", "idempotency_outcome"),
    ),
    Step("runs_create_invalid", "POST", "/v1/fusion/runs", {**run_request("req-bad"), "messages": []}),
    Hook("paused"),
    Step(
        "runs_inspect_paused",
        "GET",
        "/v1/fusion/runs/{paused_run}/inspect",
        same=("state", "status"),
        expect={
            "requires_action.candidate_id": "{paused_candidate}",
            "requires_action.tool_call_id": "{paused_tool_call}",
        },
    ),
    Step(
        "tool_results_wrong_call",
        "POST",
        "/v1/fusion/runs/{paused_run}/tool-results",
        {
            "candidate_id": "{paused_candidate}",
            "tool_call_id": "call_nope",
            "tool_name": "{paused_tool}",
            "output": "4",
        },
        same=("error.error_code", "error.terminal_reason", "error.error_kind"),
    ),
    Step(
        "tool_results_wrong_candidate",
        "POST",
        "/v1/fusion/runs/{paused_run}/tool-results",
        {"candidate_id": "c9", "tool_call_id": "{paused_tool_call}", "tool_name": "{paused_tool}", "output": "4"},
        same=("error.error_code", "error.terminal_reason", "error.error_kind"),
    ),
    Step(
        "tool_results_wrong_name",
        "POST",
        "/v1/fusion/runs/{paused_run}/tool-results",
        {"candidate_id": "{paused_candidate}", "tool_call_id": "{paused_tool_call}", "tool_name": "rm", "output": "4"},
        same=("error.error_code", "error.terminal_reason", "error.error_kind"),
    ),
    Step("tool_results_invalid", "POST", "/v1/fusion/runs/{paused_run}/tool-results", {"output": "4"}),
    Step(
        "tool_results_right",
        "POST",
        "/v1/fusion/runs/{paused_run}/tool-results",
        {
            "candidate_id": "{paused_candidate}",
            "tool_call_id": "{paused_tool_call}",
            "tool_name": "{paused_tool}",
            "output": "4 words",
        },
        expect={"run_id": "{paused_run}"},
    ),
    Step(
        "tool_results_not_waiting",
        "POST",
        "/v1/fusion/runs/{run}/tool-results",
        NOT_WAITING,
        same=("error.error_code", "error.terminal_reason", "error.error_kind"),
    ),
    Step(
        "tool_results_404",
        "POST",
        f"/v1/fusion/runs/{UNKNOWN_RUN}/tool-results",
        NOT_WAITING,
        same=("error.error_code", "error.terminal_reason"),
    ),
    Step(
        "fuse",
        "POST",
        "/v1/fusion/trajectories:fuse",
        {"messages": TASK, "trajectories": TRAJECTORIES},
        same=("decision", "judge_synthesis_record.schema", "judge_synthesis_record.input_candidate_ids"),
    ),
    Step(
        "fuse_empty",
        "POST",
        "/v1/fusion/trajectories:fuse",
        {"messages": TASK, "trajectories": []},
        same=("error.code",),
    ),
    Step(
        "fuse_unknown_judge",
        "POST",
        "/v1/fusion/trajectories:fuse",
        {"messages": TASK, "trajectories": TRAJECTORIES, "judge_model": "ghost"},
        same=("error.code",),
    ),
    Step(
        "fuse_invalid",
        "POST",
        "/v1/fusion/trajectories:fuse",
        {"messages": TASK, "trajectories": [{"trajectory_id": "x", "model_id": "m", "status": "succeeded"}]},
    ),
    Step(
        "step",
        "POST",
        "/v1/fusion/trajectory:step",
        {"model": "fusionkit/router", "messages": TASK, "trajectories": TRAJECTORIES},
        same=("object", "model", "choices.0.finish_reason"),
    ),
    Step(
        "step_no_trajectories",
        "POST",
        "/v1/fusion/trajectory:step",
        {"messages": TASK},
        same=("object", "model", "choices.0.finish_reason"),
    ),
    Step(
        "step_flat_tool_choice",
        "POST",
        "/v1/fusion/trajectory:step",
        {"messages": TASK, "trajectories": TRAJECTORIES, "tools": [RUN_TESTS], "tool_choice": {"name": "run_tests"}},
        same=("object", "choices.0.finish_reason", "choices.0.message.tool_calls.0.function.name"),
        known={
            "choices[].message.content": "the seed answers content '' beside tool calls; we answer null, as OpenAI "
            "does (CONFORMANCE.md #3): either way a client reads no text",
        },
    ),
    Step(
        "step_stream",
        "POST",
        "/v1/fusion/trajectory:step",
        {"messages": TASK, "trajectories": TRAJECTORIES, "stream": True},
    ),
    Step(
        "step_unknown_judge",
        "POST",
        "/v1/fusion/trajectory:step",
        {"messages": TASK, "judge_model": "ghost"},
        same=("error.code",),
    ),
]


def fill(value: Any, context: dict[str, str]) -> Any:
    """`value` with every `{name}` of the context replaced, in strings at any depth."""
    if isinstance(value, str):
        return _PLACEHOLDER.sub(lambda m: context.get(m[1], m[0]), value)
    if isinstance(value, list):
        return [fill(v, context) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, context) for k, v in value.items()}
    return value


def pick(data: Any, path: str) -> Any:
    """The value at a dotted key path (`choices.0.message`); KeyError when it is not there."""
    for part in path.split("."):
        if isinstance(data, list):
            data = data[int(part)]
        elif isinstance(data, dict):
            data = data[part]
        else:
            raise KeyError(path)
    return data


def request(base_url: str, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Exchange:
    """One HTTP exchange over stdlib urllib; a `text/event-stream` answer is split into its frames."""
    data = None if body is None else json.dumps(body).encode()
    sent = {"content-type": "application/json", **(headers or {})}
    req = urllib.request.Request(base_url + path, data=data, method=method, headers=sent)
    try:
        with urllib.request.urlopen(req, timeout=120) as response:
            status, content_type, raw = response.status, response.headers.get("content-type", ""), response.read()
    except urllib.error.HTTPError as error:
        status, content_type, raw = error.code, error.headers.get("content-type", ""), error.read()
    exchange = Exchange(name="", method=method, path=path, request=body, status=status)
    if content_type.startswith("text/event-stream"):
        frames = [line[6:] for line in raw.decode().splitlines() if line.startswith("data: ")]
        exchange.frames = [f if f == "[DONE]" else json.loads(f) for f in frames]
    else:
        exchange.body = json.loads(raw) if raw else None
    return exchange


def run_steps(
    base_url: str,
    steps: list[Step | Hook],
    hooks: dict[str, Callable[[dict[str, str]], None]],
    context: dict[str, str] | None = None,
) -> list[Exchange]:
    """Send each step in order (hooks fill the context in between); every exchange, named."""
    context = {} if context is None else context
    exchanges = []
    for step in steps:
        if isinstance(step, Hook):
            hooks[step.name](context)
            continue
        exchange = request(
            base_url, step.method, fill(step.path, context), fill(step.body, context), fill(step.headers, context)
        )
        exchange.name = step.name
        for name, path in step.capture.items():
            # An answer without the value leaves the placeholder: that step's own comparison reports it.
            with contextlib.suppress(KeyError, IndexError, TypeError, ValueError):
                context[name] = str(pick(exchange.body, path))
        for path, template in step.expect.items():
            got = pick(exchange.body, path)
            wanted = fill(template, context)
            if str(got) != wanted:
                raise AssertionError(f"{step.name}: {path} is {got!r}, expected {wanted!r}")
        exchanges.append(exchange)
    return exchanges
