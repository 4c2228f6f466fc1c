"""The eval's scorers one by one, the Python sandbox (time, memory, crashes, no network), and scorer errors."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from fusionkit_cli.eval.answers import Answer, CalledTool
from fusionkit_cli.eval.sandbox import Sandbox, extract_code
from fusionkit_cli.eval.scorers import Score, Scoring, chosen_letter
from fusionkit_cli.eval.tasks import Task


def task(scorer: dict[str, Any], **fields: Any) -> Task:
    return Task.model_validate({"id": "t", "prompt": "q", "scorer": scorer, **fields})


async def score(scorer: dict[str, Any], text: str = "", calls: list[CalledTool] | None = None, **fields: Any) -> Score:
    return await Scoring(Sandbox(), grader=None).score(
        task(scorer, **fields), Answer(text=text, tool_calls=calls or [])
    )


async def test_exact_is_case_insensitive_unless_asked_and_folds_whitespace() -> None:
    assert (await score({"type": "exact", "expected": "Canberra"}, "  canberra\n")).passed
    assert not (await score({"type": "exact", "expected": "Canberra"}, "Canberra, Australia")).passed
    assert not (await score({"type": "exact", "expected": "Au", "case_sensitive": True}, "AU")).passed
    assert (await score({"type": "exact", "expected": ["New York", "NYC"]}, "new   york")).passed
    failed = await score({"type": "exact", "expected": "97"}, "I think 89")
    assert not failed.passed and failed.reason == "expected '97'; got 'I think 89'"


async def test_contains_and_regex() -> None:
    assert (await score({"type": "contains", "expected": "Jupiter"}, "It is JUPITER, by far.")).passed
    assert not (await score({"type": "contains", "expected": "Jupiter", "case_sensitive": True}, "jupiter")).passed
    assert (await score({"type": "regex", "pattern": r"299[ ,]?792"}, "about 299 792 km/s")).passed
    assert (await score({"type": "regex", "pattern": "paris"}, "PARIS")).passed  # case-insensitive by default
    missed = await score({"type": "regex", "pattern": r"\b100\b"}, "1000 degrees")
    assert not missed.passed and "no match" in missed.reason


@pytest.mark.parametrize(
    ("answer", "letter"),
    [
        ("C", "C"),
        ("(B)", "B"),
        ("The answer is (D).", "D"),
        ("Answer: A", "A"),
        ("Looking at B) and C), the answer is C", "C"),
        ("**B**", "B"),
        ("B) TCP guarantees ordering.", "B"),
    ],
)
def test_choice_letter_extraction(answer: str, letter: str) -> None:
    assert chosen_letter(answer)[0] == letter


async def test_choice_scores_the_letter_and_refuses_to_guess() -> None:
    assert (await score({"type": "choice", "expected": "c"}, "The answer is (C).")).passed
    wrong = await score({"type": "choice", "expected": "B"}, "A")
    assert not wrong.passed and wrong.reason == "chose A (the whole answer); expected B"
    vague = await score({"type": "choice", "expected": "B"}, "A) is plausible but B) too")
    assert not vague.passed and "several letters" in vague.reason
    none = await score({"type": "choice", "expected": "B"}, "I don't know")
    assert not none.passed and none.reason == "no choice letter in the answer"


async def test_json_schema_validates_the_answer_or_its_fenced_block() -> None:
    schema = {"type": "object", "required": ["city"], "properties": {"city": {"const": "Lisbon"}}}
    spec = {"type": "json_schema", "schema": schema}
    assert (await score(spec, '{"city": "Lisbon"}')).passed
    assert (await score(spec, 'Here it is:\n```json\n{"city": "Lisbon", "t": 21}\n```')).passed
    wrong = await score(spec, '{"city": "Porto"}')
    assert not wrong.passed and wrong.reason.startswith("does not match the schema at city:")
    missing = await score(spec, "{}")
    assert not missing.passed and "'city' is a required property" in missing.reason
    not_json = await score(spec, "Lisbon")
    assert not not_json.passed and not_json.reason.startswith("the answer holds no JSON")


async def test_tool_call_needs_the_name_and_the_argument_subset() -> None:
    spec = {"type": "tool_call", "name": "convert", "arguments": {"amount": 100, "to": "USD"}}
    right = CalledTool("convert", json.dumps({"amount": 100.0, "from": "EUR", "to": "USD"}))
    assert (await score(spec, calls=[CalledTool("log", "{}"), right])).passed
    wrong_args = await score(spec, calls=[CalledTool("convert", '{"amount": 10, "to": "USD"}')])
    assert not wrong_args.passed and "expected arguments including" in wrong_args.reason
    other = await score(spec, calls=[CalledTool("weather", "{}")])
    assert not other.passed and other.reason == "called weather, not convert"
    text = await score(spec, "100 EUR is 108 USD")
    assert not text.passed and text.reason.startswith("no tool call")
    # true is not 1
    flag = {"type": "tool_call", "name": "f", "arguments": {"x": 1}}
    assert not (await score(flag, calls=[CalledTool("f", '{"x": true}')])).passed


def test_code_is_taken_from_the_python_block() -> None:
    answer = "Sure:\n```\nnot this\n```\n```python\ndef f():\n    return 1\n```\n"
    assert extract_code(answer) == "def f():\n    return 1\n"
    assert extract_code("```\nx = 1\n```") == "x = 1\n"
    assert extract_code("x = 1") == "x = 1"


PY = {
    "type": "python",
    "tests": "assert add(2, 3) == 5\n\ndef test_negative():\n    assert add(-1, 1) == 0",
    "timeout_s": 5,
}


async def test_python_passes_and_captures_what_it_prints() -> None:
    result = await score(PY, "```python\ndef add(a, b):\n    print('adding', a, b)\n    return a + b\n```")
    assert result.passed and result.reason == "2 of 2 tests passed"
    assert "adding 2 3" in result.details["stdout"] and "adding -1 1" in result.details["stdout"]


async def test_python_failing_test_names_it() -> None:
    result = await score(PY, "```python\ndef add(a, b):\n    return a + b if a > 0 else 7\n```")
    assert not result.passed and result.reason.startswith("1 of 2 tests failed; test_negative: AssertionError")


async def test_python_that_never_ends_times_out() -> None:
    result = await score({**PY, "timeout_s": 1}, "```python\nwhile True:\n    pass\n```")
    assert not result.passed and result.reason == "timed out after 1 s"


async def test_python_that_crashes_is_a_failure_with_its_exit() -> None:
    result = await score(PY, "```python\nimport os\nos._exit(3)\n```")
    assert not result.passed and result.reason == "the process exited with status 3 before reporting"
    syntax = await score(PY, "I don't know.")
    assert not syntax.passed and "SyntaxError" in syntax.reason


async def test_python_memory_is_limited() -> None:
    result = await score({**PY, "memory_mb": 128}, "```python\nblob = bytearray(1024 ** 3)\n```")
    assert not result.passed and "MemoryError" in result.reason


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.setblocking(False)
    yield server
    server.close()


async def test_python_cannot_reach_the_network(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    connect = f"socket.create_connection(('127.0.0.1', {port}), timeout=2).close()"
    code = f"import socket\ndef fetch():\n    {connect}\n    return 1"
    result = await score({**PY, "tests": "assert fetch() == 1"}, f"```python\n{code}\n```")
    assert not result.passed and "the python scorer's sandbox has no network" in result.reason
    with pytest.raises(BlockingIOError):
        listener.accept()  # nothing ever connected
    raw = f"import socket\ns = socket.socket()\ns.connect(('127.0.0.1', {port}))"
    direct = await score({**PY, "tests": "pass"}, raw)
    assert not direct.passed and "has no network" in direct.reason and "audit hook" in str(direct.details["network"])
    with pytest.raises(BlockingIOError):
        listener.accept()


async def test_python_cannot_start_processes() -> None:
    result = await score({**PY, "tests": "pass"}, "import subprocess\nsubprocess.run(['true'])")
    assert not result.passed and "refuses subprocess.Popen" in result.reason


async def test_a_scorer_that_breaks_fails_the_answer_with_its_reason() -> None:
    async def broken_grader(body: dict[str, Any]) -> Answer:
        raise RuntimeError("grader exploded")

    judged = task({"type": "judge", "rubric": "is it polite?"})
    result = await Scoring(Sandbox(), grader=broken_grader).score(judged, Answer(text="hello"))
    assert not result.passed and result.reason == "scorer error: RuntimeError: grader exploded"
    no_grader = await Scoring(Sandbox(), grader=None).score(judged, Answer(text="hello"))
    assert not no_grader.passed and no_grader.reason.startswith("scorer error: a judge task needs a grader")
    failed_answer = await Scoring(Sandbox(), grader=None).score(judged, Answer(error="the router answered 502: x"))
    assert not failed_answer.passed and failed_answer.reason == "no answer: the router answered 502: x"
