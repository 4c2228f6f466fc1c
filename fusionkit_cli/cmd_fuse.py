"""`fusionkit fuse trajectories.json`: fuse agent trajectories into one answer.

Directly with `--config` (the judge and synthesizer are called in-process) or through a
running router with `--url`. Progress goes to stderr, the answer to stdout. Exit 0 on success,
2 on bad input (naming the trajectory index and field), 1 when a model call fails.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import click
import httpx2

from bridge.errors import APIError
from fusionkit_cli.common import BadInput, load_config_or_exit
from server.protocol.trajectories import FuseTrajectoriesRequest
from server.trajectories import TrajectoryFileError, load_trajectory_file

__all__ = ["fuse"]


def _read_input(path: str, prompt: str | None) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(f"{path}: not a JSON file ({exc})") from None
    if isinstance(data, list):
        if not prompt:
            raise BadInput(f"{path}: a bare list of trajectories needs --prompt (the task they worked on)")
        data = {"prompt": prompt, "trajectories": data}
    if not isinstance(data, dict):
        raise BadInput(f"{path}: expected an object with 'trajectories', or a list of trajectories")
    if prompt:
        data = {**{k: v for k, v in data.items() if k != "messages"}, "prompt": prompt}
    return data


def _validate(path: str, data: dict[str, Any]) -> FuseTrajectoriesRequest:
    try:
        return load_trajectory_file(data)
    except TrajectoryFileError as exc:
        raise BadInput(f"{path}: {exc}") from None


class _Progress:
    """Phase lines on stderr with the elapsed time."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, phase: str) -> None:
        click.echo(f"[{time.monotonic() - self.started:5.1f}s] {phase}", err=True)


async def _fuse_direct(config_path: str, body: FuseTrajectoriesRequest, progress: _Progress) -> dict[str, Any]:
    from bridge.protocol import ChatRequest
    from server.clients import build_clients
    from server.engine import FusionEngine, MemoryRecorder, Phase
    from server.engine.events import EngineEvent
    from server.trajectories import best_verified, synthesis_record, to_candidates

    config = load_config_or_exit(config_path)
    clients = build_clients(config)
    for param, value in (("--judge-model", body.judge_model), ("--synthesizer-model", body.synthesizer_model)):
        if value is not None and value not in clients:
            raise BadInput(f"{param} {value!r} is not an endpoint of {config_path}; allowed: {', '.join(clients)}")
    judge = body.judge_model or config.judge
    synth = body.synthesizer_model or config.synthesizer

    async def emit(event: EngineEvent) -> None:
        if isinstance(event, Phase):
            progress(f"{event.name} ({judge if event.name == 'judging' else synth})")

    engine = FusionEngine(config, clients)
    try:
        result = await engine.fuse_answers(
            ChatRequest(model="fusionkit/trajectories", messages=body.messages),
            to_candidates(body.trajectories),
            MemoryRecorder(),
            judge_id=judge,
            synth_id=synth,
            best=best_verified(body.trajectories),
            emit=emit,
        )
    finally:
        await asyncio.gather(*(c.aclose() for c in clients.values()))
    record = synthesis_record(result, judge=judge, synth=synth, synthesis_id=None, trajectories=body.trajectories)
    return record.wire()


def _fuse_remote(url: str, body: FuseTrajectoriesRequest, progress: _Progress) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"} if (key := os.environ.get("FUSIONKIT_API_KEY")) else {}
    progress(f"sending {len(body.trajectories)} trajectories to {url}")
    try:
        response = httpx2.post(
            url.rstrip("/") + "/v1/fusion/trajectories:fuse",
            headers=headers,
            timeout=600,
            json=body.model_dump(mode="json", exclude_none=True),
        )
    except httpx2.HTTPError as exc:
        raise click.ClickException(f"cannot reach the router at {url}: {exc}") from None
    if response.status_code in (400, 422):
        raise BadInput(response.json().get("error", {}).get("message", response.text))
    if response.status_code != 200:
        raise click.ClickException(f"the router answered {response.status_code}: {response.text[:500]}")
    return dict(response.json())


@click.command()
@click.argument("trajectories_path", metavar="TRAJECTORIES.json", type=click.Path(dir_okay=False))
@click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), help="Call the models directly (panel config)."
)
@click.option("--url", help="Use a running router instead, e.g. http://127.0.0.1:8080.")
@click.option("--prompt", help="The task the agents worked on (replaces the file's prompt/messages).")
@click.option("--judge-model", help="Endpoint id of the judge (default: the config's judge).")
@click.option("--synthesizer-model", help="Endpoint id of the synthesizer (default: the config's).")
@click.option("--json", "as_json", is_flag=True, help="Print the whole record as JSON.")
@click.option("--output", type=click.Path(dir_okay=False), help="Also write the answer (or the --json record) here.")
@click.option(
    "--allow-fallback",
    is_flag=True,
    help="Exit 0 when the judge and the synthesizer both failed and the answer is a trajectory's own output.",
)
def fuse(
    trajectories_path: str,
    config_path: str | None,
    url: str | None,
    prompt: str | None,
    judge_model: str | None,
    synthesizer_model: str | None,
    as_json: bool,
    output: str | None,
    allow_fallback: bool,
) -> None:
    """Fuse several agent trajectories into one answer.

    Exit 0 with a fused answer; 1 when a model call failed, or when the judge and the synthesizer
    both failed (the answer printed is then one trajectory's own output, said so on stderr; exit 0
    with --allow-fallback); 2 on bad input.
    """
    if bool(config_path) == bool(url):
        raise BadInput("give exactly one of --config FILE (direct) or --url URL (a running router)")
    data = _read_input(trajectories_path, prompt)
    data.update({k: v for k, v in (("judge_model", judge_model), ("synthesizer_model", synthesizer_model)) if v})
    body = _validate(trajectories_path, data)
    progress = _Progress()
    progress(f"fusing {len(body.trajectories)} trajectories")
    try:
        record = (
            asyncio.run(_fuse_direct(config_path, body, progress))
            if config_path
            else _fuse_remote(str(url), body, progress)
        )
    except APIError as exc:
        raise click.ClickException(f"a model call failed: {exc.message}") from None
    reason = ((record.get("judge_synthesis_record") or {}).get("metrics") or {}).get("decision_reason")
    progress(f"done: {record.get('decision')} ({reason})")
    failed = {f["code"] for f in (record.get("fusionkit") or {}).get("failures") or []}
    fallback = {"judge_failed", "synthesis_empty"} <= failed
    if fallback:
        selected = (record.get("judge_synthesis_record") or {}).get("selected_candidate_id")
        progress(
            f"FALLBACK: the judge and the synthesizer both failed; the answer is trajectory {selected}'s own output"
        )
    text = json.dumps(record, indent=2) if as_json else record["final_output"]
    click.echo(text)
    if output:
        try:
            Path(output).write_text(text + "\n", encoding="utf-8")
        except OSError as exc:
            raise BadInput(f"{output}: cannot write ({exc})") from None
    sys.stdout.flush()
    if fallback and not allow_fallback:
        sys.exit(1)
