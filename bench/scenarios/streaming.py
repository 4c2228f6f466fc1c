"""Streaming `fusionkit/panel`: time to the first content token against time to the whole answer.

Three panel members and a judge take 100 ms each; the synthesizer streams 200 tokens at 50
tokens/s, its first token at once. So the ideal first token is at panel + judge = 200 ms and the
ideal whole answer 199 token intervals later. The target allows 100 ms more for the first token.
"""

from __future__ import annotations

import statistics

from bench.load import run_load
from bench.scenarios.common import FUSED, FUSED_EXPECT, Settings, router, upstream, write_config
from bench.stats import Result, Row

__all__ = ["streaming"]

MEMBER_MS = 100
TOKENS, TOKENS_PER_S = 200, 50
IDEAL_FIRST_MS = 2 * MEMBER_MS
IDEAL_WHOLE_MS = IDEAL_FIRST_MS + (TOKENS - 1) * 1000 / TOKENS_PER_S


def streaming(settings: Settings) -> Result:
    requests = settings.pick(8, 3)
    names = ("p1", "p2", "p3", "judge")
    profiles = [f"{name}={MEMBER_MS}" for name in names] + [f"synth=0,{TOKENS},{TOKENS_PER_S}"]
    with upstream(*profiles) as stand_in:
        endpoints = {name: f"{stand_in.url}/{name}/v1" for name in (*names, "synth")}
        config = write_config(
            settings.workdir,
            endpoints,
            panel_models=["p1", "p2", "p3"],
            judge_model="judge",
            synthesizer_model="synth",
        )
        with router(config) as server:
            load = run_load(
                f"{server.url}/v1/chat/completions",
                {**FUSED, "stream": True},
                requests=requests,
                concurrency=1,
                warmup_per_worker=1,
                expect=FUSED_EXPECT,
            )
    if len(load.first_token_ms) != len(load.latencies_ms):
        raise RuntimeError("a streamed answer carried no content token")
    target = IDEAL_FIRST_MS + 100
    return Result(
        rows=[
            Row.of(
                "streaming panel: time to first content token",
                "ms",
                load.first_token_ms,
                floor=IDEAL_FIRST_MS,
                floor_note="panel + judge",
                target=f"<= {target} ms",
                met=statistics.median(load.first_token_ms) <= target,
            ),
            Row.of(
                "streaming panel: time to the whole answer (200 tokens at 50/s)",
                "ms",
                load.latencies_ms,
                floor=IDEAL_WHOLE_MS,
                floor_note="panel + judge + 199 token intervals",
            ),
        ],
        details={"requests": requests},
    )
