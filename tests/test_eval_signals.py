"""`fusionkit eval` as a real process: Ctrl-C and SIGTERM write the report of what was answered, and no
sandboxed Python outlives the eval, even when the eval is killed outright."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

# A sandboxed answer that says it is running (a file the test waits for), then sleeps.
SLEEPER = (
    "```python\nimport os, time\n"
    "open(os.path.join({folder!r}, f'started-{{os.getpid()}}'), 'w').close()\ntime.sleep(120)\n```"
)
SANDBOXES = min(2, os.cpu_count() or 1)  # sleepers running at once: the eval runs one sandbox per CPU


def _setup(tmp_path: Path) -> list[str]:
    tasks = tmp_path / "tasks.jsonl"
    lines = [
        {"id": f"qa{i}", "prompt": f"Say {i}.", "scorer": {"type": "exact", "expected": str(i)}} for i in range(3)
    ] + [
        {
            "id": f"slow{i}",
            "prompt": f"Sleep {i}.",
            "reference": SLEEPER.format(folder=str(tmp_path)),
            "scorer": {"type": "python", "tests": "pass", "timeout_s": 300},
        }
        for i in range(2)
    ]
    tasks.write_text("".join(json.dumps(line) + "\n" for line in lines))
    config = tmp_path / "config.yaml"
    member = {"id": "m", "provider": "mock", "model": "mock-m", "mock": {"knows": str(tasks)}}
    config.write_text(json.dumps({"endpoints": [member], "default_mode": "single"}))
    return [
        sys.executable,
        "-m",
        "fusionkit_cli.main",
        "eval",
        str(tasks),
        "--config",
        str(config),
        "--modes",
        "single",
        "--concurrency",
        "4",
        "--out",
        str(tmp_path / "out"),
    ]


def _sandboxes(proc: subprocess.Popen[str], tmp_path: Path) -> list[psutil.Process]:
    """Wait until the eval's sandboxes run the sleepers' code (as many at once as it runs), and return them."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        started = list(tmp_path.glob("started-*"))
        if len(started) >= SANDBOXES:
            return [p for p in psutil.Process(proc.pid).children(recursive=True) if "-I" in p.cmdline()]
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"the sandboxes did not start: {proc.communicate()[1]}")


def _gone(processes: list[psutil.Process]) -> bool:
    _, alive = psutil.wait_procs(processes, timeout=10)
    return not alive


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_the_eval_with_a_partial_report(tmp_path: Path, signum: signal.Signals, status: int) -> None:
    # Python ignores SIGINT in a child started with it ignored; a terminal's Ctrl-C reaches it with the default.
    proc = subprocess.Popen(
        _setup(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        sandboxes = _sandboxes(proc, tmp_path)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == status, err
    assert f"interrupted by {signum.name}; writing the report" in err
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert data["stopped"] == f"interrupted by {signum.name}"
    assert {o["task_id"] for o in data["outcomes"]} == {"qa0", "qa1", "qa2"}  # the sleepers never answered
    assert data["summary"]["trials"] == 3 and data["summary"]["planned_trials"] == 5
    assert _gone(sandboxes)


@pytest.mark.slow
def test_sandboxes_die_with_an_eval_that_is_killed(tmp_path: Path) -> None:
    proc = subprocess.Popen(_setup(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        sandboxes = _sandboxes(proc, tmp_path)
        proc.kill()  # no handler runs: only the children's parent-death signal can stop them
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _gone(sandboxes)
