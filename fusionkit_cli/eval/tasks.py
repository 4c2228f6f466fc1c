"""The task file of `fusionkit eval`: one JSON object per line, each a prompt and how to score its answer.

    tasks = load_tasks("configs/eval/tiny.jsonl")      # raises TaskFileError naming file:line and key
    tasks[0].request_body()                              # the Chat Completions body sent for it

Fields (docs/eval.md explains each): `id`, `prompt` or `messages`, optional `tools`,
`response_format`, `category`, `reference`, and `scorer`, whose `type` is one of SCORER_TYPES.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from bridge.base_models import Strict
from bridge.errors import describe_validation_error
from bridge.protocol import ChatMessage, ResponseFormat, Tool

__all__ = [
    "SCORER_TYPES",
    "ChoiceScorer",
    "ContainsScorer",
    "ExactScorer",
    "JsonSchemaScorer",
    "JudgeScorer",
    "PythonScorer",
    "RegexScorer",
    "ScorerSpec",
    "Task",
    "TaskFileError",
    "ToolCallScorer",
    "load_tasks",
]

SCORER_TYPES = ("exact", "contains", "regex", "choice", "json_schema", "python", "tool_call", "judge")


class ExactScorer(Strict):
    """The answer, trimmed and with whitespace runs made single spaces, equals `expected` (or one of a list)."""

    type: Literal["exact"]
    expected: str | list[str] = Field(min_length=1)
    case_sensitive: bool = False


class ContainsScorer(Strict):
    """The answer contains `expected` (or one of a list)."""

    type: Literal["contains"]
    expected: str | list[str] = Field(min_length=1)
    case_sensitive: bool = False


class RegexScorer(Strict):
    """`pattern` matches somewhere in the answer (Python `re.search`)."""

    type: Literal["regex"]
    pattern: str
    case_sensitive: bool = False

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression ({exc})") from None
        return value


class ChoiceScorer(Strict):
    """The letter the answer chooses (A, B, ...) is `expected`."""

    type: Literal["choice"]
    expected: str

    @field_validator("expected")
    @classmethod
    def _letter(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z]", value.strip()):
            raise ValueError(f"found {value!r}; allowed: one letter, A to Z")
        return value.strip().upper()


class JsonSchemaScorer(Strict):
    """The answer (or its fenced JSON block) parses as JSON and validates against `schema`."""

    type: Literal["json_schema"]
    json_schema: dict[str, Any] = Field(alias="schema")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @field_validator("json_schema")
    @classmethod
    def _valid_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        import jsonschema

        try:
            jsonschema.validators.validator_for(value).check_schema(value)
        except jsonschema.SchemaError as exc:
            raise ValueError(f"not a valid JSON Schema ({exc.message})") from None
        return value


class PythonScorer(Strict):
    """The answer's code block, then `tests`, run in a sandboxed subprocess; every test must pass."""

    type: Literal["python"]
    tests: str = Field(min_length=1)
    timeout_s: float = Field(default=10, gt=0, le=600)
    memory_mb: int = Field(default=512, ge=64, le=65536)


class ToolCallScorer(Strict):
    """The answer calls tool `name` with arguments that include `arguments`."""

    type: Literal["tool_call"]
    name: str = Field(min_length=1)
    arguments: dict[str, Any] = Field(default_factory=dict)


class JudgeScorer(Strict):
    """A grader model reads the answer against `rubric` and says pass or fail, with its reasoning."""

    type: Literal["judge"]
    rubric: str = Field(min_length=1)


ScorerSpec = Annotated[
    ExactScorer
    | ContainsScorer
    | RegexScorer
    | ChoiceScorer
    | JsonSchemaScorer
    | PythonScorer
    | ToolCallScorer
    | JudgeScorer,
    Field(discriminator="type"),
]


class Task(Strict):
    id: str = Field(min_length=1, max_length=200)
    prompt: str | None = Field(default=None, min_length=1)
    messages: list[ChatMessage] | None = Field(default=None, min_length=1)
    tools: list[Tool] | None = None
    response_format: ResponseFormat | None = None
    category: str | None = None
    reference: str | None = None
    scorer: ScorerSpec

    @model_validator(mode="after")
    def _one_prompt(self) -> Task:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of 'prompt' (a string) or 'messages' (a chat)")
        return self

    def chat_messages(self) -> list[dict[str, Any]]:
        if self.messages is not None:
            return [m.model_dump(exclude_none=True) for m in self.messages]
        return [{"role": "user", "content": self.prompt}]

    def question(self) -> str:
        """The last user turn, as the grader is shown it."""
        for message in reversed(self.chat_messages()):
            if message["role"] == "user":
                content = message.get("content")
                if isinstance(content, list):
                    return "".join(str(p.get("text", "")) for p in content)
                return str(content or "")
        return ""

    def request_body(self, model: str) -> dict[str, Any]:
        """The Chat Completions body that asks `model` (a `fusionkit/*` mode or an endpoint id) this task."""
        body: dict[str, Any] = {"model": model, "messages": self.chat_messages()}
        if self.tools:
            body["tools"] = [t.model_dump(exclude_none=True) for t in self.tools]
        if self.response_format is not None:
            body["response_format"] = self.response_format.model_dump(exclude_none=True)
        return body


class TaskFileError(Exception):
    """A task file that cannot be used; one line per problem, each naming file:line and the key."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _describe(where: str, exc: ValidationError, data: dict[str, Any]) -> list[str]:
    problems = []
    for problem in describe_validation_error(exc.errors(), data).problems:
        message = problem.message
        if problem.type == "union_tag_invalid":
            message = f"found {problem.context.get('tag')!r}; allowed: {', '.join(SCORER_TYPES)}"
        elif problem.type == "union_tag_not_found":
            message = f"needs a 'type': one of {', '.join(SCORER_TYPES)}"
        elif problem.type == "extra_forbidden":
            message = "unknown key"
        elif problem.type == "missing":
            message = "required key is missing"
        problems.append(f"{where}: {problem.path or '(the task)'}: {message}")
    return problems


def load_tasks(path: str | Path) -> list[Task]:
    """Every task of a JSONL file, or TaskFileError listing every problem (up to 20)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise TaskFileError([f"{path}: file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TaskFileError([f"{path}: cannot read the file ({exc})"]) from None
    tasks: list[Task] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"{where}: not a JSON object ({exc.msg}, column {exc.colno})")
            continue
        if not isinstance(data, dict):
            problems.append(f"{where}: expected a JSON object, found {type(data).__name__}")
            continue
        try:
            task = Task.model_validate(data)
        except ValidationError as exc:
            problems.extend(_describe(where, exc, data))
            continue
        if task.id in seen:
            problems.append(f"{where}: id: {task.id!r} is already the id of line {seen[task.id]}")
            continue
        seen[task.id] = number
        tasks.append(task)
    if not tasks and not problems:
        problems.append(f"{path}: no tasks (one JSON object per line)")
    if problems:
        raise TaskFileError(problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else []))
    return tasks
