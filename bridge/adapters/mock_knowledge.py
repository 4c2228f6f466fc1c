"""What a mock member knows (`mock.knows`, `mock.accuracy`): the answers of a task set, right by chance.

    knowledge = MockKnowledge.load("configs/eval/tiny.jsonl", {"python": 0.5, "default": 0.8})
    known = knowledge.reply(request, model="mock-a", seed=1)   # None: not a task this mock knows

Asked a task of the set, the mock answers right with probability `accuracy` for the task's category,
and otherwise gives the wrong answer every member gives ("I don't know.", or another letter for a
multiple choice). The draw is a pure function of (model, seed, task id, request seed): members with
different seeds err independently, identical members identically, and a run can be repeated.

Asked to fuse answers to a task of the set (a synthesis, or an agent step, over `<candidate>` blocks),
it takes the answer most candidates gave, the earliest on a tie: a majority vote, whose accuracy
probability predicts (three independent members right 70 % of the time: 0.7³ + 3·0.7²·0.3 = 78.4 %).
The judge's JSON analysis stays the ordinary mock's.

The task file is the JSONL of `fusionkit eval` (docs/eval.md); only what a known answer needs is read
here (the bridge imports nothing of the CLI): `id`, `prompt` or `messages`, `category`, `reference`, and
the `scorer`'s `type`, `expected`, `name` and `arguments`. A task with neither a reference nor an
expected answer (a regex, python or judge task without `reference`) is not known.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge.adapters.mock import _digest, candidate_blocks
from bridge.protocol import AssistantMessage, ChatRequest, FunctionCall, ToolCall, Usage, message_text

__all__ = ["DONT_KNOW", "KnownReply", "KnownTask", "MockKnowledge"]

DONT_KNOW = "I don't know."
_PROPOSAL = re.compile(r"^\[proposes tool call ([^\s(]+)\((.*)\)\]$", re.M)
_CONVERSATION = re.compile(r"<conversation>\n(.*?)\n</conversation>", re.S)
_USER_LINE = "[user]: "


@dataclass(frozen=True)
class KnownReply:
    """An answer: text, or one tool call (name, arguments as canonical JSON)."""

    text: str | None = None
    tool: tuple[str, str] | None = None

    def key(self) -> tuple[str, str]:
        """What counts as the same answer in a vote."""
        if self.tool is not None:
            return ("tool", f"{self.tool[0]}({self.tool[1]})")
        return ("text", " ".join((self.text or "").split()).casefold())


@dataclass(frozen=True)
class KnownTask:
    id: str
    category: str | None
    right: KnownReply
    wrong: KnownReply


def _normalise(text: str) -> str:
    return " ".join(text.split())


def _last_user_text(messages: list[Any]) -> str | None:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            return str(content or "")
    return None


def _canonical(arguments: Any) -> str:
    return json.dumps(arguments, sort_keys=True)


def _known_task(data: dict[str, Any]) -> tuple[str, KnownTask] | None:
    """(question, task) for a task whose right answer can be told, else None."""
    question = data.get("prompt") if isinstance(data.get("prompt"), str) else None
    if question is None and isinstance(data.get("messages"), list):
        question = _last_user_text(data["messages"])
    scorer: dict[str, Any] = data["scorer"] if isinstance(data.get("scorer"), dict) else {}
    kind, expected, reference = scorer.get("type"), scorer.get("expected"), data.get("reference")
    if isinstance(expected, list):
        expected = expected[0] if expected else None
    wrong = KnownReply(text=DONT_KNOW)
    if kind == "tool_call" and isinstance(scorer.get("name"), str):
        right = KnownReply(tool=(scorer["name"], _canonical(scorer.get("arguments") or {})))
    elif isinstance(reference, str):
        right = KnownReply(text=reference)
    elif kind in ("exact", "contains", "choice") and isinstance(expected, str):
        right = KnownReply(text=expected)
    else:
        return None
    if kind == "choice" and isinstance(expected, str):
        wrong = KnownReply(text="B" if expected.strip().upper() == "A" else "A")
    if not question or not isinstance(data.get("id"), str):
        return None
    category = data.get("category") if isinstance(data.get("category"), str) else None
    return _normalise(question), KnownTask(data["id"], category, right, wrong)


class MockKnowledge:
    """The known tasks of one mock, by question, and the chance of answering each right."""

    def __init__(self, tasks: dict[str, KnownTask], accuracy: float | dict[str, float]) -> None:
        self.tasks = tasks
        self.accuracy = accuracy

    @classmethod
    def load(cls, path: str | Path, accuracy: float | dict[str, float]) -> MockKnowledge:
        tasks: dict[str, KnownTask] = {}
        for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not a JSON object ({exc.msg})") from None
            known = _known_task(data) if isinstance(data, dict) else None
            if known is not None:
                tasks.setdefault(*known)
        return cls(tasks, accuracy)

    def chance(self, task: KnownTask) -> float:
        if isinstance(self.accuracy, dict):
            return self.accuracy.get(task.category or "default", self.accuracy.get("default", 1.0))
        return self.accuracy

    def reply(self, request: ChatRequest, *, model: str, seed: int) -> tuple[AssistantMessage, str, Usage] | None:
        """The answer to a known task (or the vote over answers to one); None for anything else."""
        texts = [message_text(m) for m in request.messages]
        blocks = [block for text in texts for block in candidate_blocks(text)]
        task = self._asked(request)
        if blocks:
            wants_json = request.response_format is not None and request.response_format.type != "text"
            task = task or self._in_conversation(texts)
            if task is None or wants_json:
                return None
            answer = _majority([body for _, _, body in blocks])
        elif task is not None:
            draw = random.Random(_digest("knows", model, seed, task.id, request.seed)).random()
            answer = task.right if draw < self.chance(task) else task.wrong
        else:
            return None
        message = _message(answer, request, task.id)
        calls = message.tool_calls or []
        completion = len((message.content or "").split()) + sum(len(c.function.arguments.split()) + 5 for c in calls)
        prompt = sum(len(text.split()) for text in texts) + 3 * len(texts)
        return message, ("tool_calls" if calls else "stop"), Usage.of(prompt, max(completion, 1))

    def _asked(self, request: ChatRequest) -> KnownTask | None:
        question = next((message_text(m) for m in reversed(request.messages) if m.role == "user"), None)
        return self.tasks.get(_normalise(question)) if question else None

    def _in_conversation(self, texts: list[str]) -> KnownTask | None:
        """The task a synthesis prompt is about: the last user turn of its rendered conversation."""
        for text in texts:
            conversation = _CONVERSATION.search(text)
            if conversation and _USER_LINE in conversation.group(1):
                return self.tasks.get(_normalise(conversation.group(1).rsplit(_USER_LINE, 1)[1]))
        return None


def _majority(bodies: list[str]) -> KnownReply:
    """The answer most candidates gave; on a tie, the one given first."""
    replies = []
    for body in bodies:
        proposal = _PROPOSAL.search(body)
        if proposal:
            try:
                arguments = _canonical(json.loads(proposal.group(2) or "{}"))
            except json.JSONDecodeError:
                arguments = proposal.group(2)
            replies.append(KnownReply(tool=(proposal.group(1), arguments)))
        else:
            replies.append(KnownReply(text=body.strip()))
    counts = Counter(r.key() for r in replies)
    top = max(counts.values())
    return next(r for r in replies if counts[r.key()] == top)


def _message(answer: KnownReply, request: ChatRequest, task_id: str) -> AssistantMessage:
    offered = {t.function.name for t in request.tools or []}
    if answer.tool is not None and answer.tool[0] in offered:
        name, arguments = answer.tool
        call = ToolCall(
            id=f"call_{_digest(task_id, name, arguments) % 10**12:012d}",
            function=FunctionCall(name=name, arguments=arguments),
        )
        return AssistantMessage(content=None, tool_calls=[call])
    # A call the request does not offer is said, not made: the router drops members that call unknown tools.
    return AssistantMessage(
        content=answer.text if answer.tool is None else f"I would call {answer.tool[0]}({answer.tool[1]})."
    )
