"""The fusion engine: modes, panel fan-out, judge, synthesizer, verifier. It knows nothing about HTTP."""

from server.engine.engine import FusionEngine, FusionResult
from server.engine.events import EngineEvent, Phase, TextDelta
from server.engine.recorder import MemoryRecorder, Recorder

__all__ = ["EngineEvent", "FusionEngine", "FusionResult", "MemoryRecorder", "Phase", "Recorder", "TextDelta"]
