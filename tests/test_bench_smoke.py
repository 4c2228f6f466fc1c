"""The benchmark's own instrument: the upstream stand-in answers the openai client correctly."""

from __future__ import annotations

import openai

from bench.procs import free_port, spawn, wait_healthy


def test_bench_upstream_answers_whole_and_streamed() -> None:
    port = free_port()
    with spawn(["-m", "bench.upstream", "--port", str(port), "--tokens", "12", "--tokens-per-s", "200"]) as proc:
        wait_healthy(f"http://127.0.0.1:{port}", proc, path="/v1/models")
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        ask = [{"role": "user", "content": "hi"}]
        whole = client.chat.completions.create(model="bench", messages=ask)
        words = whole.choices[0].message.content.split()
        assert len(words) == 12 and words[0] == f"upstream-{port}" and whole.usage.completion_tokens == 12
        chunks = list(
            client.chat.completions.create(
                model="bench", messages=ask, stream=True, stream_options={"include_usage": True}
            )
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text.split() == words
        assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
        judged = client.chat.completions.create(model="bench", messages=ask, response_format={"type": "json_object"})
        assert judged.choices[0].message.content.startswith('{"consensus"')
