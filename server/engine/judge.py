"""The judge's analysis: its schema, and tolerant parsing of what a model actually returns."""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, Field, ValidationError

__all__ = ["JUDGE_SCHEMA", "JudgeAnalysis", "parse_analysis"]


class JudgeAnalysis(BaseModel):
    consensus: list[str] = Field(default_factory=list)
    contradictions: list[str] = Field(default_factory=list)
    unique_insights: list[str] = Field(default_factory=list)
    coverage_gaps: list[str] = Field(default_factory=list)
    likely_errors: list[str] = Field(default_factory=list)
    # The seed's FusionAnalysis has it; kept when a judge gives it, so records carry every seed key.
    recommended_final_structure: list[str] = Field(default_factory=list)
    ranking: list[str] = Field(default_factory=list)
    best_candidate_id: str | None = None
    # True when the best candidate is right as it stands and needs nothing from the others: with
    # `fusion.synthesis: auto` it is then the answer, verbatim.
    best_is_clear: bool | None = None
    rationale: str = ""


JUDGE_SCHEMA: dict[str, Any] = {
    "name": "fusion_judge_analysis",
    "strict": False,
    "schema": JudgeAnalysis.model_json_schema(),
}

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)


def parse_analysis(text: str) -> tuple[JudgeAnalysis | None, str | None]:
    """The analysis from a judge's reply, accepting fenced or prefixed JSON; else (None, why)."""
    candidates = [text.strip()]
    candidates += [m.strip() for m in _FENCE.findall(text)]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    last_error = "the judge returned no JSON object"
    for raw in candidates:
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            last_error = f"the judge's reply is not valid JSON ({exc.msg})"
            continue
        if not isinstance(data, dict):
            last_error = "the judge's JSON is not an object"
            continue
        try:
            return JudgeAnalysis.model_validate(_coerce_lists(data)), None
        except ValidationError as exc:
            last_error = f"the judge's JSON does not match the analysis schema ({exc.error_count()} problems)"
    return None, last_error


def _coerce_lists(data: dict[str, Any]) -> dict[str, Any]:
    """Models often return a string or objects where a list of strings is asked; keep their words."""
    out = dict(data)
    for key, field in JudgeAnalysis.model_fields.items():
        if field.annotation != list[str] or key not in out:
            continue
        value = out[key]
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list):
            out[key] = [v if isinstance(v, str) else json.dumps(v) for v in value]
    return out
