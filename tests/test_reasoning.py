"""Visible reasoning (`fusion.show_reasoning`) on every front door, through the official SDKs over mock members.

With it on, a streaming client gets the run's reasoning (a line per panel member, then the
judge's analysis naming its chosen candidate) before the first token of the answer: as
`delta.reasoning_content` on Chat Completions, a `reasoning` item with summary text on Responses,
a `thinking` block on Messages. The answer after it is the one a client gets without it. With it
off, nothing of it is sent. Every test starts the real router on a free port; the judge's choice
is read back from the run store the router wrote.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from agents import Agent, ModelSettings, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled
from openai.types.shared import Reasoning

from tests.doors_helpers import collapse, router, run_events
from tests.router_helpers import demo_endpoints, mock_endpoint

QUESTION = "Should I compare Postgres and SQLite for a small web app?"
SHOW = {"fusion": {"show_reasoning": True}}
HIDE = {"fusion": {"show_reasoning": False}}
WEATHER_ASK = 'Call get_weather with {"city": "Paris"} and tell me what it says.'
WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def judges_choice(tmp_path: Path, run_id: str) -> str:
    """The candidate the judge chose, as the run recorded it."""
    [record] = [e.payload for e in run_events(tmp_path / "runs.sqlite3", run_id) if e.type == "judge.record"]
    return str(record["analysis"]["best_candidate_id"])


def check_reasoning_text(text: str, best: str) -> None:
    """A line for each panel member (in the order they answered), then the judge's analysis and its choice."""
    lines = text.splitlines()
    answered = sorted(line.split(" ", 2)[:2] for line in lines if " answered in " in line)
    assert answered == [["c1", "(fast)"], ["c2", "(careful)"], ["c3", "(structured)"]]
    judged = lines.index("The judge (fast) compared the candidates.")
    assert judged == 3 and lines[judged + 1].startswith("They agree: ")
    assert f"Best: {best}. {best} (" in text


# -- Chat Completions ----------------------------------------------------------------------------------


def chat_client(server: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)


def chunk_kind(chunk: Any) -> str:
    if not chunk.choices:
        return "usage"
    choice = chunk.choices[0]
    if (choice.delta.model_extra or {}).get("reasoning_content") is not None:
        return "reasoning"
    if choice.delta.content:
        return "content"
    if choice.finish_reason is not None:
        return "finish"
    return "role" if choice.delta.role == "assistant" else "other"


def reasoning_of(chunks: list[Any]) -> str:
    return "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or "" for c in chunks if c.choices)


def chat_stream(server: Any, extra: dict[str, Any] | None = None, **kwargs: Any) -> tuple[list[Any], str]:
    with chat_client(server).chat.completions.with_streaming_response.create(
        model="fusionkit/panel",
        messages=[{"role": "user", "content": QUESTION}],
        stream=True,
        extra_body=extra,
        **kwargs,
    ) as raw:
        return list(raw.parse()), raw.headers["x-fusion-run-id"]


def test_chat_streams_reasoning_content_before_the_answer_and_the_same_answer_after_it(
    tmp_path: Path, live_server: Any
) -> None:
    server = router(tmp_path, live_server)
    chunks, run_id = chat_stream(server, SHOW, stream_options={"include_usage": True})

    assert collapse([chunk_kind(c) for c in chunks]) == ["role", "reasoning+", "content+", "finish", "usage"]
    assert {c.id for c in chunks} == {chunks[0].id}
    check_reasoning_text(reasoning_of(chunks), judges_choice(tmp_path, run_id))
    answer = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Fused answer drawing on c1, c2, c3" in answer

    # Off (the default): not a trace of it, and the very same answer.
    plain, _ = chat_stream(server)
    assert collapse([chunk_kind(c) for c in plain]) == ["role", "content+", "finish"]
    assert all("reasoning_content" not in (c.choices[0].delta.model_extra or {}) for c in plain)
    assert "".join(c.choices[0].delta.content or "" for c in plain) == answer

    # A whole (unstreamed) answer carries none: it is the same message either way.
    whole = chat_client(server).chat.completions.create(
        model="fusionkit/panel", messages=[{"role": "user", "content": QUESTION}], extra_body=SHOW
    )
    assert whole.choices[0].message.content == answer
    assert "reasoning_content" not in (whole.choices[0].message.model_extra or {})


def test_the_config_default_shows_reasoning_and_a_request_turns_it_off(tmp_path: Path, live_server: Any) -> None:
    endpoints = [*demo_endpoints(), mock_endpoint("flaky", fail_rate=1.0)]
    server = router(tmp_path, live_server, endpoints, fusion={"show_reasoning": True})

    chunks, run_id = chat_stream(server)
    assert collapse([chunk_kind(c) for c in chunks]) == ["role", "reasoning+", "content+", "finish"]
    reasoning = reasoning_of(chunks)
    assert "c4 (flaky) was dropped: " in reasoning  # a member that failed is named with its reason
    assert f"Best: {judges_choice(tmp_path, run_id)}." in reasoning

    hidden, _ = chat_stream(server, HIDE)
    assert collapse([chunk_kind(c) for c in hidden]) == ["role", "content+", "finish"]


# -- Responses -------------------------------------------------------------------------------------------

OPENED = ["response.created", "response.in_progress"]
REASONING_ITEM = [  # output_index 0
    "response.output_item.added",
    "response.reasoning_summary_part.added",
    "response.reasoning_summary_text.delta+",
    "response.reasoning_summary_text.done",
    "response.reasoning_summary_part.done",
    "response.output_item.done",
]
MESSAGE_ITEM = ["response.output_item.added", "response.content_part.added", "response.output_text.delta+"]
MESSAGE_ITEM += ["response.output_text.done", "response.content_part.done", "response.output_item.done"]


def responses_stream(server: Any, extra: dict[str, Any] | None = None, **kwargs: Any) -> tuple[list[Any], str]:
    kwargs.setdefault("input", QUESTION)
    with chat_client(server).responses.with_streaming_response.create(
        model="fusionkit/panel", stream=True, extra_body=extra, **kwargs
    ) as raw:
        return list(raw.parse()), raw.headers["x-fusion-run-id"]


def test_responses_streams_a_reasoning_item_before_the_message(tmp_path: Path, live_server: Any) -> None:
    server = router(tmp_path, live_server)
    events, run_id = responses_stream(server, SHOW)

    assert collapse([e.type for e in events]) == [*OPENED, *REASONING_ITEM, *MESSAGE_ITEM, "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    added, done = events[2].item, next(e.item for e in events if e.type == "response.output_item.done")
    assert added.type == done.type == "reasoning" and added.summary == [] and added.id == done.id
    assert added.id.startswith("rs_")
    reasoning_events = [e for e in events if e.type.startswith("response.reasoning_summary")]
    assert {(e.item_id, e.output_index, e.summary_index) for e in reasoning_events} == {(added.id, 0, 0)}
    text = "".join(e.delta for e in events if e.type == "response.reasoning_summary_text.delta")
    check_reasoning_text(text, judges_choice(tmp_path, run_id))
    text_done = next(e for e in events if e.type == "response.reasoning_summary_text.done")
    part_done = next(e for e in events if e.type == "response.reasoning_summary_part.done")
    assert text_done.text == part_done.part.text == text and done.summary[0].text == text
    message_events = [e for e in events if e.type.startswith(("response.content_part", "response.output_text"))]
    assert {e.output_index for e in message_events} == {1}

    completed = events[-1].response
    assert [item.type for item in completed.output] == ["reasoning", "message"]
    assert completed.output[0].id == added.id and completed.output[0].summary[0].text == text
    answer = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert completed.output_text == answer

    # Off: the stream as it always was, and the same answer.
    plain, _ = responses_stream(server)
    assert not any("reasoning" in e.type for e in plain)
    assert [item.type for item in plain[-1].response.output] == ["message"]
    assert plain[-1].response.output_text == answer
    # A whole (unstreamed) response has no reasoning item.
    whole = chat_client(server).responses.create(model="fusionkit/panel", input=QUESTION, extra_body=SHOW)
    assert [item.type for item in whole.output] == ["message"] and whole.output_text == answer


def test_the_sdk_stream_helper_accumulates_the_reasoning_item_and_the_answer(tmp_path: Path, live_server: Any) -> None:
    server = router(tmp_path, live_server)
    client = chat_client(server)
    # Codex's way of asking: `reasoning.summary`.
    with client.responses.stream(model="fusionkit/panel", input=QUESTION, reasoning={"summary": "auto"}) as stream:
        summary = "".join(e.delta for e in stream if e.type == "response.reasoning_summary_text.delta")
        final = stream.get_final_response()
    assert [item.type for item in final.output] == ["reasoning", "message"]
    assert final.output[0].summary[0].text == summary and "The judge (fast) compared" in summary
    assert final.output_text == client.responses.create(model="fusionkit/panel", input=QUESTION).output_text

    # `fusion.show_reasoning: false` overrides the request's own field.
    with client.responses.stream(
        model="fusionkit/panel", input=QUESTION, reasoning={"summary": "auto"}, extra_body=HIDE
    ) as stream:
        assert not any("reasoning" in e.type for e in stream)
        assert [item.type for item in stream.get_final_response().output] == ["message"]


def test_responses_a_tool_call_turn_puts_the_call_after_the_reasoning_item(tmp_path: Path, live_server: Any) -> None:
    server = router(tmp_path, live_server)
    tool = {"type": "function", "name": "get_weather", "description": "The weather.", "parameters": WEATHER_SCHEMA}
    events, _ = responses_stream(server, SHOW, input=WEATHER_ASK, tools=[tool])

    call_item = ["response.output_item.added", "response.function_call_arguments.delta"]
    call_item += ["response.function_call_arguments.done", "response.output_item.done"]
    assert collapse([e.type for e in events]) == [*OPENED, *REASONING_ITEM, *call_item, "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    call_events = events[-5:-1]
    assert {e.output_index for e in call_events} == {1} and call_events[0].item.type == "function_call"
    completed = events[-1].response
    assert [item.type for item in completed.output] == ["reasoning", "function_call"]
    assert json.loads(completed.output[1].arguments) == {"city": "Paris"}


def test_the_agents_sdk_takes_reasoning_items_through_a_tool_round(tmp_path: Path, live_server: Any) -> None:
    server = router(tmp_path, live_server)
    set_tracing_disabled(True)

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    async def run() -> Any:
        client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
        try:
            # The Agents SDK asks the way Codex does when its model settings say so.
            model = OpenAIResponsesModel(model="fusionkit/panel", openai_client=client)
            settings = ModelSettings(reasoning=Reasoning(summary="auto"))
            agent = Agent(name="forecaster", tools=[get_weather], model=model, model_settings=settings)
            result = Runner.run_streamed(agent, WEATHER_ASK)
            async for _ in result.stream_events():
                pass
            return result
        finally:
            await client.close()

    result = asyncio.run(run())
    assert "From the tool result, the answer is sunny in Paris" in str(result.final_output)
    # Both turns began with the run's reasoning; the second turn got the first one's back and went on.
    kinds = [item.type for item in result.new_items]
    assert kinds == [
        "reasoning_item",
        "tool_call_item",
        "tool_call_output_item",
        "reasoning_item",
        "message_output_item",
    ]
    assert all(item.raw_item.summary[0].text for item in result.new_items if item.type == "reasoning_item")


# -- Messages ----------------------------------------------------------------------------------------------


THINKING_BLOCK = [  # index 0
    "content_block_start:thinking",
    "content_block_delta:thinking_delta+",
    "content_block_delta:signature_delta",
    "content_block_stop",
]
CLOSING = ["message_delta", "message_stop"]


def messages_client(server: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key="x", max_retries=0)


def event_kind(event: Any) -> str:
    """The event's type, with a block's or a delta's own type (`content_block_delta:thinking_delta`)."""
    if event.type == "content_block_start":
        return f"{event.type}:{event.content_block.type}"
    if event.type == "content_block_delta":
        return f"{event.type}:{event.delta.type}"
    return str(event.type)


def messages_stream(server: Any, extra: dict[str, Any] | None = None, **kwargs: Any) -> tuple[list[Any], str]:
    kwargs.setdefault("messages", [{"role": "user", "content": QUESTION}])
    with messages_client(server).messages.with_streaming_response.create(
        model="fusionkit/panel", max_tokens=1024, stream=True, extra_body=extra, **kwargs
    ) as raw:
        return list(raw.parse()), raw.headers["x-fusion-run-id"]


def test_messages_streams_a_thinking_block_before_the_text(tmp_path: Path, live_server: Any) -> None:
    server = router(tmp_path, live_server)
    events, run_id = messages_stream(server, SHOW)

    text_block = ["content_block_start:text", "content_block_delta:text_delta+", "content_block_stop"]
    assert collapse([event_kind(e) for e in events]) == ["message_start", *THINKING_BLOCK, *text_block, *CLOSING]
    blocks = [e for e in events if e.type.startswith("content_block")]
    thinking_end = next(i for i, e in enumerate(blocks) if e.type == "content_block_stop")
    assert {e.index for e in blocks[: thinking_end + 1]} == {0} and {e.index for e in blocks[thinking_end + 1 :]} == {1}
    assert events[1].content_block.thinking == ""
    thinking = "".join(e.delta.thinking for e in events if event_kind(e) == "content_block_delta:thinking_delta")
    check_reasoning_text(thinking, judges_choice(tmp_path, run_id))
    [signature] = [e.delta.signature for e in events if event_kind(e) == "content_block_delta:signature_delta"]
    assert signature == ""  # unsigned: FusionKit's account of the run, not a model's signed thinking
    answer = "".join(e.delta.text for e in events if event_kind(e) == "content_block_delta:text_delta")

    # Off: no thinking block, the text block first, the same answer.
    plain, _ = messages_stream(server)
    assert [event_kind(e) for e in plain][:2] == ["message_start", "content_block_start:text"]
    assert not any("thinking" in event_kind(e) or "signature" in event_kind(e) for e in plain)
    assert "".join(e.delta.text for e in plain if e.type == "content_block_delta") == answer
    # A whole (unstreamed) message has no thinking block.
    whole = messages_client(server).messages.create(
        model="fusionkit/panel", max_tokens=1024, messages=[{"role": "user", "content": QUESTION}], extra_body=SHOW
    )
    assert [block.type for block in whole.content] == ["text"] and whole.content[0].text == answer


def test_thinking_asks_for_it_the_sdk_helper_takes_it_and_it_can_be_sent_back(tmp_path: Path, live_server: Any) -> None:
    server = router(tmp_path, live_server)
    client = messages_client(server)
    question = [{"role": "user", "content": QUESTION}]
    # Claude Code's way of asking: `thinking: {type: adaptive}` (its every request says so).
    with client.messages.stream(
        model="fusionkit/panel", max_tokens=1024, messages=question, thinking={"type": "adaptive"}
    ) as stream:
        thinking = "".join(e.thinking for e in stream if e.type == "thinking")
        final = stream.get_final_message()
    assert [block.type for block in final.content] == ["thinking", "text"]
    assert final.content[0].thinking == thinking and final.content[0].signature == ""
    assert "The judge (fast) compared" in thinking

    # The next turn sends the thinking block back, unsigned, as Claude Code does: it is taken and dropped.
    history = [*question, {"role": "assistant", "content": [b.model_dump() for b in final.content]}]
    follow_up = client.messages.create(
        model="fusionkit/panel",
        max_tokens=1024,
        messages=[*history, {"role": "user", "content": "And for a large one?"}],
        thinking={"type": "adaptive"},
    )
    assert follow_up.stop_reason == "end_turn"
    assert any(
        d.startswith("thinking blocks of earlier turns") for d in follow_up.model_extra["fusionkit"]["door"]["dropped"]
    )


@pytest.mark.parametrize(
    ("config_default", "thinking", "fusion", "shown"),
    [
        (False, {"type": "enabled", "budget_tokens": 2048}, None, True),
        (True, {"type": "disabled"}, None, False),
        (True, None, None, True),
        (False, {"type": "adaptive"}, HIDE, False),
    ],
    ids=["enabled-asks", "disabled-declines-over-the-config", "config-default", "fusion-overrides-thinking"],
)
def test_who_decides_whether_messages_shows_thinking(
    tmp_path: Path,
    live_server: Any,
    config_default: bool,
    thinking: dict[str, Any] | None,
    fusion: dict[str, Any] | None,
    shown: bool,
) -> None:
    server = router(tmp_path, live_server, fusion={"show_reasoning": config_default})
    kwargs = {"thinking": thinking} if thinking is not None else {}
    events, _ = messages_stream(server, fusion, **kwargs)
    kinds = [event_kind(e) for e in events]
    assert (kinds[1] == "content_block_start:thinking") is shown
    assert ("content_block_delta:thinking_delta" in kinds) is shown


def test_messages_a_tool_use_turn_puts_the_tool_after_the_thinking_block(tmp_path: Path, live_server: Any) -> None:
    server = router(tmp_path, live_server)
    tool = {"name": "get_weather", "description": "The weather.", "input_schema": WEATHER_SCHEMA}
    events, _ = messages_stream(server, SHOW, messages=[{"role": "user", "content": WEATHER_ASK}], tools=[tool])

    tool_block = ["content_block_start:tool_use", "content_block_delta:input_json_delta", "content_block_stop"]
    assert collapse([event_kind(e) for e in events]) == ["message_start", *THINKING_BLOCK, *tool_block, *CLOSING]
    assert [e.index for e in events if e.type.startswith("content_block")] == [0] * (len(events) - 6) + [1, 1, 1]
    assert events[-2].delta.stop_reason == "tool_use"
