"""What an eval measured: the arms (a config's fused mode, or one of its members alone) and one scored
outcome per (task, repetition, arm), each pointing at its run in the run store.

    arm = Arm(config="demo", kind="fused", name="panel")       # label "demo · panel"
    outcome = Outcome(task_id="qa-1", arm=arm.label, run_id="run_...", passed=True, reason="equals 'Paris'")

These are what report.json holds, and what `--replay` reads back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = ["Arm", "Outcome", "RouterRecord"]


@dataclass(frozen=True)
class Arm:
    """One thing measured: a config answering in a mode (`fused`), or one endpoint of it alone (`member`)."""

    config: str
    kind: Literal["fused", "member"]
    name: str
    judge: str | None = None  # set for a replay: the judge and synthesizer it re-ran with
    synthesizer: str | None = None

    @property
    def label(self) -> str:
        if self.kind == "member":
            return f"{self.config} · {self.name} alone"
        if self.judge or self.synthesizer:
            return f"{self.config} · {self.name} (judge {self.judge}, synthesizer {self.synthesizer})"
        return f"{self.config} · {self.name}"

    @property
    def model(self) -> str:
        """The `model` a request for this arm names."""
        return self.name if self.kind == "member" else f"fusionkit/{self.name}"

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Arm:
        return cls(data["config"], data["kind"], data["name"], data.get("judge"), data.get("synthesizer"))


@dataclass
class Outcome:
    """One task (one repetition) answered by one arm, and scored."""

    task_id: str
    arm: str
    passed: bool
    reason: str
    category: str | None = None
    repeat: int = 0
    run_id: str | None = None
    cost: float = 0.0
    cost_complete: bool = True
    grading_cost: float = 0.0
    latency_ms: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    answer: str = ""
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, int]:
        """Which trial this is, for pairing arms: the task and the repetition."""
        return (self.task_id, self.repeat)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Outcome:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class RouterRecord:
    """Where a config's runs are: its config file and run store (in-process), or its router's URL."""

    name: str
    config_path: str | None
    url: str | None
    store: str | None
    members: list[str]
    judge: str | None
    synthesizer: str | None
