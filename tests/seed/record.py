"""Record the published fusionkit-server 0.1.1's answers to every seed scenario (`make seed-fixtures`).

    make seed-fixtures        # a temp venv with fusionkit-core/-server 0.1.1, then this module in it

Runs inside the seed's own venv with the repo on PYTHONPATH, in a temp working dir (the seed
writes its run store under `.fusionkit/runs` of the working dir). The seed and the stand-in
upstream (`tests.seed.standin`) are real uvicorn servers on loopback ports; each exchange of
`scenarios.STEPS` is written to `fixtures/NN-name.json`, and `fixtures/manifest.json` says what
recorded them and lists the seed's enum values (the comparison holds ours to them).
"""

from __future__ import annotations

import argparse
import json
import platform
from importlib import metadata
from pathlib import Path
from typing import get_args

from fusionkit_core import contracts, run
from fusionkit_core.artifacts import LocalArtifactStore
from fusionkit_core.clients import build_clients
from fusionkit_core.config import FusionConfig
from fusionkit_core.contracts import FusionRunRequestV1
from fusionkit_core.fusion import FusionEngine
from fusionkit_core.run import FusionRunManager, ToolExecutionPolicy
from fusionkit_core.run_store import FileSystemRunStore
from fusionkit_server.app import create_app

from tests.livesrv import LiveServer
from tests.seed.scenarios import ENDPOINTS, STEPS, run_request, run_steps
from tests.seed.standin import StandinApp

PAUSED_TOOL = "word_count"
# The enums a seed client may switch on, by the key that holds them, straight from the seed's own types.
ENUMS = {
    "state": contracts.FusionRunState,
    "status": contracts.Status,
    "event_type": run.RunEventType,
    "idempotency_outcome": run.IdempotencyOutcome,
    "error_kind": contracts.ErrorKind,
    "owner": contracts.Owner,
    "side_effects": contracts.SideEffects,
    "kind": contracts.ArtifactKind,
    "decision": contracts.SynthesisDecision,
    "mode": contracts.FusionMode,
    "redaction_status": contracts.RedactionStatus,
}


def seed_config(upstream: str) -> FusionConfig:
    return FusionConfig.model_validate(
        {
            "endpoints": [
                {"id": endpoint_id, "model": model, "base_url": upstream, "provider": "openai-compatible"}
                for endpoint_id, model in ENDPOINTS
            ],
            "default_model": ENDPOINTS[0][0],
            "judge_model": ENDPOINTS[1][0],
            "default_mode": "router",
            "panel_models": [endpoint_id for endpoint_id, _ in ENDPOINTS],
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the fixtures directory to (re)write")
    out: Path = parser.parse_args().out
    root = Path(".fusionkit/runs").resolve()
    with LiveServer(StandinApp()) as upstream:
        config = seed_config(upstream.url)
        manager = FusionRunManager(
            FusionEngine(config, build_clients(config)), FileSystemRunStore(root), LocalArtifactStore(root)
        )

        def paused(context: dict[str, str]) -> None:
            # fusionkit-server 0.1.1 has no route that pauses a run: pause one as its own code does.
            request = FusionRunRequestV1.model_validate(run_request("req-paused", tool_policy="external_pause"))
            created = manager.create_run(request)
            assert created.run_id is not None
            pause = manager.request_tool_action(
                created.run_id,
                candidate_id="candidate_seed",
                tool_name=PAUSED_TOOL,
                arguments={"text": "the quick brown fox"},
                policy=ToolExecutionPolicy(mode="external"),
            )
            assert not hasattr(pause, "error_code"), pause
            context.update(
                paused_run=created.run_id,
                paused_candidate=pause.candidate_id,
                paused_tool_call=pause.tool_call_id,
                paused_tool=PAUSED_TOOL,
            )

        with LiveServer(create_app(config, run_manager=manager)) as seed:
            exchanges = run_steps(seed.url, STEPS, hooks={"paused": paused})

    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.json"):
        old.unlink()
    for number, exchange in enumerate(exchanges, start=1):
        path = out / f"{number:02d}-{exchange.name}.json"
        path.write_text(json.dumps(exchange.as_json(), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    versions = {name: metadata.version(name) for name in ("fusionkit-core", "fusionkit-server", "fastapi", "pydantic")}
    manifest = {
        "recorded_by": "tests/seed/record.py",
        "python": platform.python_version(),
        "versions": versions,
        "enums": {key: sorted(get_args(kind)) for key, kind in ENUMS.items()},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {len(exchanges)} seed exchanges to {out}")


if __name__ == "__main__":
    main()
