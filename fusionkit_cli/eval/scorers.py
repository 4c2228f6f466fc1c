"""Scoring one answer against its task's `scorer`: pass or fail, always with the reason.

    scoring = Scoring(Sandbox(), grader=None)
    score = await scoring.score(task, answer)        # Score(passed=True, reason="equals 'Paris'")

A scorer that cannot do its work (a grader that answers no JSON, code that cannot run) fails the
answer with the reason; nothing a task or an answer holds stops the eval.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from fusionkit_cli.eval.answers import Answer
from fusionkit_cli.eval.sandbox import Sandbox, extract_code
from fusionkit_cli.eval.tasks import (
    ChoiceScorer,
    ContainsScorer,
    ExactScorer,
    JsonSchemaScorer,
    JudgeScorer,
    PythonScorer,
    RegexScorer,
    Task,
    ToolCallScorer,
)

__all__ = ["GRADER_SYSTEM", "Grader", "Score", "Scoring", "chosen_letter", "parse_json_answer"]

# Asks the grader model for a verdict (a chat body without `model`); answers the grader's reply.
Grader = Callable[[dict[str, Any]], Awaitable[Answer]]

GRADER_SYSTEM = (
    "You grade an answer to a task against a rubric. Read the task, the rubric, the reference answer if "
    "one is given, and the answer. Think about whether the answer meets the rubric, then reply with one "
    'JSON object: {"reasoning": "<why, in a few sentences>", "pass": true or false}.'
)

_ANSWER_PHRASE = re.compile(r"(?i:answer|option|choice)(?:\s+is)?\s*[:\-]?\s*[\(\[]?\**([A-Z])\**[\)\]]?(?![A-Za-z])")
_MARKED_LETTER = re.compile(r"(?:^|[\s(\[*])\(?([A-Z])[\).:\]](?=\s|$)", re.M)


@dataclass
class Score:
    passed: bool
    reason: str
    details: dict[str, Any] = field(default_factory=dict)
    cost: float = 0.0  # what scoring itself cost (the grader's call)


def _clip(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _fold(text: str, case_sensitive: bool) -> str:
    text = " ".join(text.split())
    return text if case_sensitive else text.casefold()


def _expected(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def chosen_letter(answer: str) -> tuple[str | None, str]:
    """The letter a multiple-choice answer picks, and how it was found (or why none was)."""
    phrases = _ANSWER_PHRASE.findall(answer)
    if phrases:
        return phrases[-1], "stated as the answer"
    bare = re.sub(r"[\s*_`().:\[\]]", "", answer)
    if re.fullmatch(r"[A-Za-z]", bare):
        return bare.upper(), "the whole answer"
    marked = list(dict.fromkeys(_MARKED_LETTER.findall(answer)))
    if len(marked) == 1:
        return marked[0], "the only marked letter"
    if marked:
        return None, f"several letters ({', '.join(marked)}) and none stated as the answer"
    return None, "no choice letter in the answer"


def parse_json_answer(answer: str) -> Any:
    """The JSON an answer holds: all of it, else its fenced block, else its outermost {...} or [...]."""
    candidates = [answer.strip()]
    fenced = re.search(r"```[a-zA-Z]*\s*\n(.*?)```", answer, re.S)
    if fenced:
        candidates.append(fenced.group(1).strip())
    for open_, close in (("{", "}"), ("[", "]")):
        start, end = answer.find(open_), answer.rfind(close)
        if 0 <= start < end:
            candidates.append(answer[start : end + 1])
    for text in candidates:
        try:
            return json.loads(text)
        except ValueError:
            continue
    raise ValueError("the answer holds no JSON")


def _includes(actual: Any, expected: Any) -> bool:
    """`actual` has everything `expected` has: keys recursively, list items in order, equal scalars."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and _includes(actual[k], v) for k, v in expected.items())
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(expected)
            and all(_includes(a, e) for a, e in zip(actual, expected, strict=True))
        )
    if isinstance(expected, bool) or isinstance(actual, bool):
        return actual is expected  # true is not 1
    return bool(actual == expected)


class Scoring:
    """Scores answers; holds what scorers share: the code sandbox and the grader model."""

    def __init__(self, sandbox: Sandbox, grader: Grader | None) -> None:
        self.sandbox = sandbox
        self.grader = grader

    async def score(self, task: Task, answer: Answer) -> Score:
        if answer.error is not None:
            return Score(False, f"no answer: {answer.error}")
        try:
            return await self._score(task, answer)
        except Exception as exc:
            return Score(False, f"scorer error: {type(exc).__name__}: {exc}")

    async def _score(self, task: Task, answer: Answer) -> Score:
        spec = task.scorer
        if isinstance(spec, ExactScorer | ContainsScorer):
            return self._text(spec, answer.text)
        if isinstance(spec, RegexScorer):
            flags = 0 if spec.case_sensitive else re.IGNORECASE
            match = re.search(spec.pattern, answer.text, flags)
            if match:
                return Score(True, f"matches /{spec.pattern}/ at {_clip(match.group(0), 60)!r}")
            return Score(False, f"no match for /{spec.pattern}/ in {_clip(answer.text)!r}")
        if isinstance(spec, ChoiceScorer):
            letter, how = chosen_letter(answer.text)
            if letter is None:
                return Score(False, how)
            verdict = "right" if letter == spec.expected else f"expected {spec.expected}"
            return Score(letter == spec.expected, f"chose {letter} ({how}); {verdict}")
        if isinstance(spec, JsonSchemaScorer):
            return self._json(spec, answer.text)
        if isinstance(spec, PythonScorer):
            return await self._python(spec, answer.text)
        if isinstance(spec, ToolCallScorer):
            return self._tool_call(spec, answer)
        return await self._judge(spec, task, answer)

    @staticmethod
    def _text(spec: ExactScorer | ContainsScorer, text: str) -> Score:
        got = _fold(text, spec.case_sensitive)
        for expected in _expected(spec.expected):
            want = _fold(expected, spec.case_sensitive)
            if (got == want) if spec.type == "exact" else (want in got):
                return Score(True, f"{'equals' if spec.type == 'exact' else 'contains'} {expected!r}")
        wanted = " or ".join(repr(e) for e in _expected(spec.expected))
        relation = "expected" if spec.type == "exact" else "does not contain"
        return Score(False, f"{relation} {wanted}; got {_clip(text)!r}")

    @staticmethod
    def _json(spec: JsonSchemaScorer, text: str) -> Score:
        import jsonschema

        try:
            data = parse_json_answer(text)
        except ValueError as exc:
            return Score(False, f"{exc}: {_clip(text)!r}")
        validator = jsonschema.validators.validator_for(spec.json_schema)(spec.json_schema)
        error = jsonschema.exceptions.best_match(validator.iter_errors(data))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
            return Score(False, f"does not match the schema at {where}: {error.message}")
        return Score(True, "valid JSON that matches the schema")

    async def _python(self, spec: PythonScorer, text: str) -> Score:
        result = await self.sandbox.run(
            extract_code(text), spec.tests, timeout_s=spec.timeout_s, memory_mb=spec.memory_mb
        )
        details = {"stdout": result.stdout, "stderr": result.stderr, "tests": result.tests, "network": result.network}
        return Score(result.passed, result.reason, details)

    @staticmethod
    def _tool_call(spec: ToolCallScorer, answer: Answer) -> Score:
        if not answer.tool_calls:
            return Score(False, f"no tool call; answered {_clip(answer.text)!r}")
        named = [c for c in answer.tool_calls if c.name == spec.name]
        if not named:
            return Score(False, f"called {', '.join(c.name for c in answer.tool_calls)}, not {spec.name}")
        for call in named:
            try:
                arguments = json.loads(call.arguments or "{}")
            except ValueError:
                continue
            if _includes(arguments, spec.arguments):
                return Score(True, f"called {spec.name} with {_clip(call.arguments)}")
        expected = json.dumps(spec.arguments)
        return Score(
            False, f"called {spec.name} with {_clip(named[0].arguments)}; expected arguments including {expected}"
        )

    async def _judge(self, spec: JudgeScorer, task: Task, answer: Answer) -> Score:
        if self.grader is None:
            return Score(False, "scorer error: a judge task needs a grader model (--grader ENDPOINT)")
        reference = f"<reference>\n{task.reference}\n</reference>\n\n" if task.reference else ""
        user = (
            f"<task>\n{task.question()}\n</task>\n\n<rubric>\n{spec.rubric}\n</rubric>\n\n{reference}"
            f"<answer>\n{answer.shown(8000)}\n</answer>\n\nReturn the JSON verdict."
        )
        body = {
            "messages": [{"role": "system", "content": GRADER_SYSTEM}, {"role": "user", "content": user}],
            "response_format": {"type": "json_object"},
            "temperature": 0,
        }
        graded = await self.grader(body)
        details: dict[str, Any] = {"grader_run_id": graded.run_id, "grader_reply": graded.text[:4000]}
        if graded.error is not None:
            return Score(False, f"scorer error: the grader failed: {graded.error}", details, graded.cost)
        try:
            verdict = parse_json_answer(graded.text)
        except ValueError:
            return Score(
                False, f"scorer error: the grader's reply is not JSON: {_clip(graded.text)!r}", details, graded.cost
            )
        passed = verdict.get("pass") if isinstance(verdict, dict) else None
        if not isinstance(passed, bool):
            return Score(False, "scorer error: the grader's JSON has no boolean 'pass'", details, graded.cost)
        reasoning = str(verdict.get("reasoning") or "")
        details["reasoning"] = reasoning
        return Score(passed, f"grader: {'pass' if passed else 'fail'}: {_clip(reasoning, 200)}", details, graded.cost)
