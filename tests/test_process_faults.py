"""Process faults: a bridge killed mid-stream, a panel member killed until `up` gives up on it, and `up`
SIGKILLed again and again."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx2
import openai
import psutil
import pytest

from tests.livesrv import free_port
from tests.up_helpers import (
    alive,
    run_fusionkit,
    start_up,
    state,
    stop,
    wait_for_output,
    wait_gone,
    write_config,
)

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


def test_a_panel_member_killed_again_and_again_is_given_up_and_the_stack_keeps_answering(tmp_path: Path) -> None:
    port = free_port()
    proc = start_up(tmp_path, write_config(tmp_path, port), "--max-restarts", "2")
    pids: list[int] = []
    try:
        wait_for_output(proc, "stop: Ctrl-C or fusionkit down")
        first = {c["name"]: c["pid"] for c in state(tmp_path)["children"]}
        pids = list(first.values())
        for restart in (1, 2):
            victim = next(c for c in state(tmp_path)["children"] if c["name"] == "m2")
            os.kill(victim["pid"], signal.SIGKILL)
            wait_for_output(proc, f"restarting m2 (restart {restart})")
            wait_for_output(proc, "bridge 'm2' is healthy again")
            pids.append(next(c for c in state(tmp_path)["children"] if c["name"] == "m2")["pid"])
        os.kill(pids[-1], signal.SIGKILL)
        wait_for_output(proc, "!!! GAVE UP on bridge 'm2': exited with status -9; restarted 2 times in 300s.")

        # The supervisor, the router and the other members keep going; the router says m2 is not ready.
        assert proc.poll() is None and len(alive([first["m0"], first["m1"], first["router"]])) == 3
        router = f"http://127.0.0.1:{port}"
        health = httpx2.get(router + "/health").json()
        assert health["status"] == "degraded" and not health["endpoints"]["m2"]["ready"]
        assert health["endpoints"]["m0"]["ready"] and health["endpoints"]["m1"]["ready"]
        client = openai.OpenAI(base_url=router + "/v1", api_key="x", max_retries=0, timeout=30)
        for _ in range(3):
            reply = client.chat.completions.create(
                model="fusionkit/panel", messages=[{"role": "user", "content": "a or b?"}]
            )
            assert reply.choices[0].message.content and reply.model_extra is not None
            assert reply.model_extra["fusionkit"]["candidate_model_ids"] == ["m0", "m1"]
        shown = run_fusionkit(tmp_path, "status")
        m2_row = next(line.split() for line in shown.stdout.splitlines() if line.startswith("m2 "))
        assert m2_row[4] == "gave-up" and m2_row[5] == "2"

        descendants = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 143
        assert wait_gone([*pids, *descendants], 5) == []
    finally:
        stop(proc, pids)
