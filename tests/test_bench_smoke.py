"""The benchmark's own instruments: the stand-in upstream answers the openai client correctly, and the
load generator counts what it was asked to. No timing is asserted (timings live in bench/)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from bench.load import LoadError, run_load
from bench.procs import free_port, spawn, wait_healthy
from bench.report import BEGIN, END, update_docs
from bench.stats import Row, percentile
from bench.upstream import parse_profile

ASK: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
BODY = {"model": "bench", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    port = free_port()
    args = ["-m", "bench.upstream", "--port", str(port), "--profile", "fast=0,12", "--profile", "paced=5,30,400"]
    with spawn(args) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, proc)
        yield url


def _client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key="test-key", max_retries=0)


def test_whole_answer_has_the_profiles_token_count_and_label(upstream: str) -> None:
    answer = _client(f"{upstream}/fast/v1").chat.completions.create(model="bench", messages=ASK)
    words = (answer.choices[0].message.content or "").split()
    assert len(words) == 12 and words[0] == "fast"
    assert answer.usage is not None and answer.usage.completion_tokens == 12
    assert answer.choices[0].finish_reason == "stop"


def test_stream_at_a_token_rate_sends_one_chunk_per_token(upstream: str) -> None:
    stream = _client(f"{upstream}/paced/v1").chat.completions.create(
        model="bench", messages=ASK, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    contents = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(contents) == 30
    assert "".join(contents).split() == ["paced", *(f"tok{i}" for i in range(1, 30))]
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 30


def test_stream_without_include_usage_has_no_usage_chunk(upstream: str) -> None:
    stream = _client(f"{upstream}/fast/v1").chat.completions.create(model="bench", messages=ASK, stream=True)
    chunks = list(stream)
    assert all(c.usage is None for c in chunks) and all(c.choices for c in chunks)


def test_judge_requests_get_analysis_json(upstream: str) -> None:
    client = _client(f"{upstream}/fast/v1")
    structured = client.chat.completions.create(model="bench", messages=ASK, response_format={"type": "json_object"})
    assert (structured.choices[0].message.content or "").startswith('{"consensus"')
    judge: list[ChatCompletionMessageParam] = [{"role": "system", "content": "You are the judge of a panel."}, *ASK]
    by_prompt = client.chat.completions.create(model="bench", messages=judge)
    assert '"best_candidate_id"' in (by_prompt.choices[0].message.content or "")


def test_unknown_path_prefix_gets_the_default_profile(upstream: str) -> None:
    answer = _client(f"{upstream}/v1").chat.completions.create(model="bench", messages=ASK)
    assert (answer.choices[0].message.content or "").split()[0] == "default"


def test_load_generator_counts_requests_and_first_tokens(upstream: str) -> None:
    whole = run_load(f"{upstream}/fast/v1/chat/completions", BODY, requests=50, concurrency=4, expect="tok11")
    assert len(whole.latencies_ms) == 50 and whole.first_token_ms == []
    streamed = run_load(
        f"{upstream}/paced/v1/chat/completions",
        {**BODY, "stream": True},
        requests=6,
        concurrency=2,
        expect="data: [DONE]",
    )
    assert len(streamed.latencies_ms) == len(streamed.first_token_ms) == 6
    # The first token is the first of 30, which arrive one by one.
    assert all(f < t for f, t in zip(streamed.first_token_ms, streamed.latencies_ms, strict=True))


def test_load_generator_refuses_to_time_unexpected_answers(upstream: str) -> None:
    with pytest.raises(LoadError, match="answer without"):
        run_load(f"{upstream}/fast/v1/chat/completions", BODY, requests=1, concurrency=1, expect="nope")
    with pytest.raises(LoadError, match="HTTP 404"):
        run_load(f"{upstream}/fast/v1/nowhere", BODY, requests=1, concurrency=1)


def test_profile_syntax() -> None:
    assert parse_profile("slow=10000") == parse_profile("slow=10000,20,0")
    assert parse_profile("s=0,200,50").tokens_per_s == 50
    with pytest.raises(argparse.ArgumentTypeError):
        parse_profile("s=1,2,3,4")
    with pytest.raises(argparse.ArgumentTypeError):
        parse_profile("s=0,0")


def test_rows_take_the_worse_tail_and_the_docs_keep_their_prose(tmp_path: Path) -> None:
    assert percentile([5, 1, 4, 2, 3], 95) == 5 and percentile([5, 1, 4, 2, 3], 50) == 3
    assert Row.of("rate", "req/s", [10, 20, 30]).p95 == 10
    assert Row.of("time", "ms", [10, 20, 30]).p95 == 30
    docs = tmp_path / "benchmarks.md"
    docs.write_text(f"intro\n{BEGIN}\nold\n{END}\noutro\n")
    row = Row.of("the one row", "ms", [1.0, 2.0], target="< 3", met=True)
    results = {
        "date": "d",
        "machine": "m",
        "python": "3",
        "command": "python -m bench",
        "file": "bench/results/x.json",
        "scenarios": {"a": {"rows": [row.model_dump()]}, "b": {"error": "boom"}},
    }
    update_docs(docs, results)
    text = docs.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old" not in text
    assert "| the one row | 1.5 ms | 2.0 ms |" in text and "`b`: not measured: boom" in text


def test_ab_alternates_two_trees_and_refuses_what_is_not_one(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    ab = [sys.executable, "-m", "bench.ab", "--rounds", "1", "--requests", "20"]
    done = subprocess.run([*ab, "--bridges", f"{root}:."], cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rounds = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["tree"] for r in rounds] == [str(root), "."]
    assert all(r["req_s"] > 0 and r["router_cpu_ms"] > 0 and r["bridges_cpu_ms"] > 0 for r in rounds)
    refused = subprocess.run([*ab, f"{tmp_path}:."], cwd=root, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "is not a FusionKit source tree" in refused.stderr
