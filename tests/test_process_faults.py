"""Process faults: a bridge killed mid-stream, and `up` SIGKILLed again and again."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import openai
import pytest

from tests.livesrv import free_port
from tests.up_helpers import alive, start_up, state, stop, wait_for_output, wait_gone, write_config

pytestmark = pytest.mark.slow


def test_killing_the_synthesizer_bridge_mid_stream_ends_the_stream_with_an_error(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, port, judge_model="m0", synthesizer_model="m1")
    text = config.read_text().replace('"mock": {"seed": 1}', '"mock": {"seed": 1, "tokens_per_s": 20}')
    config.write_text(text)
    proc = start_up(tmp_path, config)
    pids: list[int] = []
    try:
        wait_for_output(proc, "stop: Ctrl-C or fusionkit down")
        children = state(tmp_path)["children"]
        pids = [c["pid"] for c in children]
        synthesizer = next(c for c in children if c["name"] == "m1")
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0, timeout=30)
        stream = client.chat.completions.create(
            model="fusionkit/panel", stream=True, messages=[{"role": "user", "content": "compare a and b"}]
        )
        received = []
        with pytest.raises(openai.APIError):
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    received.append(chunk.choices[0].delta.content)
                    if len(received) == 2:
                        os.kill(synthesizer["pid"], signal.SIGKILL)
        assert len(received) >= 2  # the stream had begun, then ended in an error, not a hang
    finally:
        stop(proc, pids)
        assert wait_gone(pids, 10) == []


def test_up_sigkilled_twenty_times_in_a_row_leaves_no_orphan(tmp_path: Path) -> None:
    config = write_config(tmp_path, free_port(), endpoints=1)
    for attempt in range(20):
        proc = start_up(tmp_path, config)
        pids: list[int] = []
        try:
            wait_for_output(proc, "stop: Ctrl-C or fusionkit down")
            pids = [c["pid"] for c in state(tmp_path)["children"]]
            assert len(alive(pids)) == 2
            proc.kill()
            proc.wait()
            assert wait_gone(pids, 5) == [], f"orphans after kill {attempt + 1}"
        finally:
            stop(proc, pids)
