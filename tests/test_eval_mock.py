"""The mock's knowledge knob (`mock.knows`, `mock.accuracy`) through a real mock bridge and the openai SDK."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from bridge.app import create_app
from bridge.endpoint import EndpointConfig
from fusionkit_cli.config_loader import ConfigError, load_config
from fusionkit_cli.eval.stats import wilson

TOOLS = [
    {
        "type": "function",
        "function": {"name": "get_time", "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}},
    },
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    },
]


def write_tasks(path: Path, count: int = 200) -> Path:
    lines = [
        {
            "id": f"q{i}",
            "category": "qa",
            "prompt": f"What is {i} squared?",
            "scorer": {"type": "exact", "expected": str(i * i)},
        }
        for i in range(count)
    ]
    lines.append(
        {
            "id": "mc",
            "category": "choice",
            "prompt": "Pick one: A) x B) y",
            "scorer": {"type": "choice", "expected": "A"},
        }
    )
    lines.append(
        {
            "id": "tool",
            "category": "tool",
            "prompt": "Weather in Oslo?",
            "tools": TOOLS,
            "scorer": {"type": "tool_call", "name": "get_weather", "arguments": {"city": "Oslo"}},
        }
    )
    lines.append({"id": "free", "prompt": "Write a poem.", "scorer": {"type": "judge", "rubric": "rhymes"}})
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return path


def client_for(live_server: Any, tasks: Path, **mock: Any) -> openai.OpenAI:
    endpoint = EndpointConfig(
        id="m", provider="mock", model=mock.pop("model", "mock-k"), mock={"knows": str(tasks), **mock}
    )
    server = live_server(create_app(endpoint))
    return openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)


def ask(client: openai.OpenAI, prompt: str, **extra: Any) -> Any:
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": prompt}]
    return client.chat.completions.create(model="m", messages=messages, **extra).choices[0]


def test_a_mock_that_always_knows_answers_every_known_task(tmp_path: Path, live_server: Any) -> None:
    client = client_for(live_server, write_tasks(tmp_path / "t.jsonl"), accuracy=1.0)
    assert ask(client, "What is 7 squared?").message.content == "49"
    assert ask(client, "  What is 7\nsquared? ").message.content == "49"  # whitespace does not matter
    assert ask(client, "Pick one: A) x B) y").message.content == "A"
    called = ask(client, "Weather in Oslo?", tools=TOOLS)
    assert called.finish_reason == "tool_calls"
    (call,) = called.message.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Oslo"}
    # Tasks it cannot know (no reference, no expected answer) and other questions get the ordinary mock.
    assert "offline mock model" in (ask(client, "Write a poem.").message.content or "")
    assert "offline mock model" in (ask(client, "How are you?").message.content or "")


def test_a_known_task_refuses_logprobs_like_any_other_question(tmp_path: Path, live_server: Any) -> None:
    client = client_for(live_server, write_tasks(tmp_path / "t.jsonl"), accuracy=1.0)
    for prompt in ("What is 7 squared?", "How are you?"):
        with pytest.raises(openai.BadRequestError) as caught:
            ask(client, prompt, logprobs=True)
        assert caught.value.body["param"] == "logprobs"  # type: ignore[index]


def test_a_mock_that_never_knows_gives_the_shared_wrong_answer(tmp_path: Path, live_server: Any) -> None:
    client = client_for(live_server, write_tasks(tmp_path / "t.jsonl"), accuracy={"qa": 0.0, "default": 0.0})
    assert ask(client, "What is 7 squared?").message.content == "I don't know."
    assert ask(client, "Pick one: A) x B) y").message.content == "B"
    assert ask(client, "Weather in Oslo?", tools=TOOLS).message.content == "I don't know."


def test_accuracy_is_a_seeded_probability(tmp_path: Path, live_server: Any) -> None:
    tasks = write_tasks(tmp_path / "t.jsonl", count=300)
    runs = {}
    for seed in (1, 1, 2):
        client = client_for(live_server, tasks, accuracy={"qa": 0.7}, seed=seed)
        runs.setdefault(seed, []).append(
            [ask(client, f"What is {i} squared?").message.content == str(i * i) for i in range(300)]
        )
    first, again = runs[1]
    assert first == again  # same model and seed: the same draws
    assert runs[2][0] != first  # another seed errs elsewhere
    for right in (first, runs[2][0]):
        interval = wilson(sum(right), len(right))
        assert interval.low <= 0.7 <= interval.high
    # A new request seed (as `fusionkit eval --repeat` sends) is a new draw.
    client = client_for(live_server, tasks, accuracy=0.5, seed=1)
    draws = {ask(client, "What is 3 squared?", seed=s).message.content for s in range(12)}
    assert draws == {"9", "I don't know."}


def test_a_knowing_mock_fuses_by_majority_vote(tmp_path: Path, live_server: Any) -> None:
    client = client_for(live_server, write_tasks(tmp_path / "t.jsonl"), accuracy=0.0)

    def synthesis(bodies: list[str]) -> str:
        blocks = "\n\n".join(f'<candidate id="c{i + 1}" model="m{i}">\n{b}\n</candidate>' for i, b in enumerate(bodies))
        prompt = f"<conversation>\n[user]: What is 7 squared?\n</conversation>\n\n{blocks}\n\nWrite the final answer."
        return ask(client, prompt).message.content or ""

    assert synthesis(["I don't know.", "49", "49"]) == "49"
    assert synthesis(["I don't know.", "49", "I don't know."]) == "I don't know."
    assert synthesis(["48", "49", "50"]) == "48"  # a tie goes to the earliest
    # An agent step (tools, the question as the last user turn) votes over proposed calls.
    reference = (
        '<candidate id="c1" model="a">\n[proposes tool call get_weather({"city": "Oslo"})]\n</candidate>\n\n'
        '<candidate id="c2" model="b">\nI don\'t know.\n</candidate>\n\n'
        '<candidate id="c3" model="c">\n[proposes tool call get_weather({"city":"Oslo"})]\n</candidate>'
    )
    messages: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": reference},
        {"role": "user", "content": "Weather in Oslo?"},
    ]
    step = client.chat.completions.create(model="m", messages=messages, tools=TOOLS).choices[0]  # type: ignore[arg-type]
    assert step.message.tool_calls and step.message.tool_calls[0].function.name == "get_weather"


@pytest.mark.parametrize(
    ("mock", "expected"),
    [
        ({"accuracy": 0.5}, "'accuracy' needs 'knows'"),
        ({"knows": "no/such/file.jsonl"}, "'knows' names no task file"),
        ({"knows": "TASKS", "accuracy": 1.5}, "a probability between 0 and 1"),
        ({"knows": "TASKS", "accuracy": {"qa": -0.1}}, "a probability between 0 and 1"),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, mock: dict[str, Any], expected: str) -> None:
    tasks = write_tasks(tmp_path / "t.jsonl", count=1)
    mock = {k: (str(tasks) if v == "TASKS" else v) for k, v in mock.items()}
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps({"endpoints": [{"id": "m", "provider": "mock", "model": "x", "mock": mock}]}))
    with pytest.raises(ConfigError) as raised:
        load_config(config)
    assert f"{config}: endpoints[0].mock" in str(raised.value) and expected in str(raised.value)
