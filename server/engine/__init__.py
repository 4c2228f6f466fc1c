"""The fusion engine: modes, panel fan-out, judge, synthesizer, verifier. It knows nothing about HTTP.

`engine` is the entry point; `planning` plans a run; `calls` makes the recorded model calls;
`panel` gathers candidates; `decide` turns them into the answer (`holding` keeps it to the client's
JSON); `result` holds what came out.
"""

from server.engine.calls import Emit
from server.engine.candidates import Best, best_candidate
from server.engine.engine import FusionEngine
from server.engine.events import EngineEvent, Paused, Phase, Reasoning, TextDelta
from server.engine.planning import RunPlan
from server.engine.recorder import MemoryRecorder, Recorder
from server.engine.result import CostEstimate, FusionResult, JudgeOutcome, Outcome, Verification

__all__ = [
    "Best",
    "CostEstimate",
    "Emit",
    "EngineEvent",
    "FusionEngine",
    "FusionResult",
    "JudgeOutcome",
    "MemoryRecorder",
    "Outcome",
    "Paused",
    "Phase",
    "Reasoning",
    "Recorder",
    "RunPlan",
    "TextDelta",
    "Verification",
    "best_candidate",
]
