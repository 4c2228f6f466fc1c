"""`fusionkit eval` at scale: 300 tasks x 3 configs through routers over 100 ms stand-ins, concurrency 16.

The eval runs as a real process (`python -m fusionkit_cli.main eval ... --config x3`), each config's
router in-process as the command starts it, every member an openai-compatible endpoint of the
stand-in upstream (100 ms per answer). Per task and config it asks the panel (members in parallel,
judge, synthesizer: 300 ms) and each of the three members alone (100 ms each); the floor is that
work spread over 16 answers in flight. The eval's own CPU (routers, scoring, report) is recorded.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

from bench.scenarios.common import Settings, upstream, write_config
from bench.stats import Result, Row

__all__ = ["eval_run"]

UPSTREAM_MS = 100
CONCURRENCY = 16
CONFIGS = (("p1", "p3"), ("p2", "p1"), ("p3", "p2"))  # (judge, synthesizer) of each config
# Per task and config: the panel (members in parallel, judge, synthesizer) and three members alone.
WORK_PER_TASK_S = (3 * UPSTREAM_MS + 3 * UPSTREAM_MS) / 1000


def eval_run(settings: Settings) -> Result:
    tasks = settings.pick(300, 100)
    path = settings.workdir / "tasks.jsonl"
    # Each stand-in answers with its own name first, so each task is right for one member alone.
    path.write_text(
        "".join(
            json.dumps(
                {"id": f"t{i}", "prompt": f"Task {i}?", "scorer": {"type": "contains", "expected": f"p{1 + i % 3}"}}
            )
            + "\n"
            for i in range(tasks)
        )
    )
    with upstream(*(f"{name}={UPSTREAM_MS}" for name in ("p1", "p2", "p3"))) as stand_in:
        endpoints = {name: f"{stand_in.url}/{name}/v1" for name in ("p1", "p2", "p3")}
        configs = [
            write_config(settings.workdir, endpoints, judge_model=judge, synthesizer_model=synth)
            for judge, synth in CONFIGS
        ]
        out = settings.workdir / "out"
        command = [sys.executable, "-m", "fusionkit_cli.main", "eval", str(path), "--out", str(out)]
        command += ["--concurrency", str(CONCURRENCY), *(arg for c in configs for arg in ("--config", str(c)))]
        cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
        seconds = time.perf_counter() - started
        cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"fusionkit eval failed ({done.returncode}): {done.stderr[-500:]}")
    report = json.loads((out / "report.json").read_text())
    answers = len(report["outcomes"])
    expected = tasks * len(CONFIGS) * 4
    if answers != expected or any(o["error"] for o in report["outcomes"]):
        raise RuntimeError(f"expected {expected} answers without errors, got {answers}")
    cpu_s = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    floor = tasks * len(CONFIGS) * WORK_PER_TASK_S / CONCURRENCY
    return Result(
        rows=[
            Row.of(
                f"eval: {tasks} tasks x 3 configs (panel + 3 members alone), concurrency 16",
                "s",
                [seconds],
                floor=floor,
                floor_note="upstream time / 16 in flight",
                target="< 60 s" if tasks == 300 else None,
                met=seconds < 60 if tasks == 300 else None,
            )
        ],
        details={
            "tasks": tasks,
            "answers": answers,
            "answers_per_s": round(answers / seconds, 1),
            "eval_process_cpu_s": round(cpu_s, 2),
            "eval_cpu_ms_per_answer": round(cpu_s * 1000 / answers, 2),
        },
    )
