"""Tool calls through fusion: a harness drives a multi-turn agent against `fusionkit/panel`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import openai

from server.app import create_app
from server.store import RunStore
from tests.router_helpers import demo_endpoints, panel_config
from tests.standins.openai_standin import create_openai_standin
from tests.standins.recorder import StandinState

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "word_count",
            "description": "Count the words in a text.",
            "parameters": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
        },
    }
]


def word_count(text: str) -> dict[str, int]:
    """The real tool the test executes between turns."""
    return {"words": len(text.split())}


def client_for(server: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)


async def _events(path: Path, run_id: str) -> list[Any]:
    store = RunStore(path)
    try:
        return await store.events(run_id, after=0, limit=1000)
    finally:
        await store.close()


def test_two_turn_agent_loop_through_the_panel(tmp_path: Path, live_server: Any) -> None:
    server = live_server(create_app(panel_config(tmp_path, demo_endpoints())))
    client = client_for(server)
    messages: list[dict[str, Any]] = [{"role": "user", "content": "How many words are in: the quick brown fox"}]

    first = client.chat.completions.create(model="fusionkit/panel", messages=messages, tools=TOOLS)
    assert first.choices[0].finish_reason == "tool_calls"
    calls = first.choices[0].message.tool_calls
    assert calls and calls[0].function.name == "word_count"
    # Every mock member proposes the same call: it is returned without a synthesizer call.
    meta = first.model_extra["fusionkit"]
    assert meta["decision"]["reason"] == "unanimous_tool_call"
    events = asyncio.run(_events(tmp_path / "runs.sqlite3", meta["run_id"]))
    roles = [e.payload["role"] for e in events if e.type == "model_call.started"]
    assert roles == ["panel", "panel", "panel"]
    proposed = [e.payload["tool_calls"] for e in events if e.type == "candidate.recorded"]
    assert len(proposed) == 3 and all(p[0]["function"]["name"] == "word_count" for p in proposed)

    # The harness executes the tool and sends the result back: the next turn is fused too.
    result = word_count(**json.loads(calls[0].function.arguments))
    messages.append(first.choices[0].message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": calls[0].id, "content": json.dumps(result)})
    second = client.chat.completions.create(model="fusionkit/panel", messages=messages, tools=TOOLS)
    assert second.choices[0].finish_reason == "stop"
    assert json.dumps(result) in second.choices[0].message.content
    assert second.model_extra["fusionkit"]["candidate_count"] == 3


def test_tool_call_streams_in_openai_delta_shape(tmp_path: Path, live_server: Any) -> None:
    server = live_server(create_app(panel_config(tmp_path, demo_endpoints())))
    stream = client_for(server).chat.completions.create(
        model="fusionkit/panel",
        messages=[{"role": "user", "content": "count the words in hello world"}],
        tools=TOOLS,
        stream=True,
    )
    chunks = list(stream)
    deltas = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or []]
    assert deltas[0].id and deltas[0].function.name == "word_count" and deltas[0].function.arguments == ""
    args = "".join(d.function.arguments or "" for d in deltas)
    assert json.loads(args) == {"text": "count the words in hello world"}
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["tool_calls"]


def test_a_member_proposing_a_tool_the_request_does_not_offer_is_dropped(tmp_path: Path, live_server: Any) -> None:
    state = StandinState(rogue_tool="delete_everything")
    upstream = live_server(create_openai_standin(state))
    endpoints = [
        *demo_endpoints(),
        {"id": "rogue", "provider": "openai-compatible", "model": "m", "base_url": upstream.url + "/v1"},
    ]
    server = live_server(create_app(panel_config(tmp_path, endpoints)))
    reply = client_for(server).chat.completions.create(
        model="fusionkit/panel", messages=[{"role": "user", "content": "count: a b c"}], tools=TOOLS
    )
    meta = reply.model_extra["fusionkit"]
    [dropped] = meta["failed_members"]
    assert dropped["endpoint_id"] == "rogue"
    assert "proposed tool 'delete_everything', which the request does not offer" in dropped["reason"]
    assert reply.choices[0].message.tool_calls[0].function.name == "word_count"
