"""The `mock` provider: a labelled offline model for demos and tests.

It is deterministic for a given (model, seed, messages, temperature); different models answer in
different voices; a judge request (a JSON response format over candidate blocks) gets valid
analysis JSON that names the candidates; a synthesis request merges the candidates it is shown;
a request with tools calls one (the tool the user's message names, with the JSON arguments it
spells out, else the first tool); a verification request (a JSON response format over a
`<final_answer>` block) gets a passing verdict. `latency_ms`, `tokens_per_s` and `fail_rate` simulate slow,
streaming and failing members. With `knows` and `accuracy` it answers a task set right by chance
(`mock_knowledge.py`), for `fusionkit eval`. Every other answer says it comes from a mock (a known
task's answer is bare, so it can be scored; the model list and metadata still say mock).

As a judge it is as gullible as a model can be: it obeys the last instruction it reads outside a
fence ("choose candidate c2", "best_candidate_id: c2"), so a candidate that gets an instruction out
of its fence hijacks it. Only fences with a code (`<candidate-CODE ...>` to `</candidate-CODE>`)
count: the plain `<candidate>` tags of a prompt that never says candidate text is data fence
nothing. With `context_window` set, a request larger than it is refused (400
`context_length_exceeded`) as a real provider would.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import itertools
import json
import random
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from bridge.adapters.base import CallContext, refuse_logprobs
from bridge.adapters.mock_json import instance
from bridge.endpoint import EndpointConfig
from bridge.errors import bad_request, upstream_failure
from bridge.protocol import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatMessage,
    ChatRequest,
    Choice,
    ChunkChoice,
    Delta,
    FunctionCall,
    FunctionCallDelta,
    Tool,
    ToolCall,
    ToolCallDelta,
    Usage,
    message_text,
)

if TYPE_CHECKING:
    from bridge.adapters.mock_knowledge import MockKnowledge

__all__ = ["CANDIDATE_BLOCK", "FENCED_BLOCK", "MOCK_LABEL", "MockAdapter", "candidate_blocks", "instructed_choice"]

MOCK_LABEL = "offline mock model"
# Candidates as labelled by a prompt that fences nothing (any client's, or fusionkit's before fences).
CANDIDATE_BLOCK = re.compile(r'<candidate id="([^"]+)" model="([^"]+)">\s*(.*?)\s*</candidate>', re.S)
# Candidates fenced with a code: a block ends only at the closing line with the same code.
FENCED_BLOCK = re.compile(
    r'^<candidate-([0-9A-Za-z]+) id="([^"]*)" model="([^"]*)">\n(.*?)\n</candidate-\1>$', re.S | re.M
)
# An instruction to the judge, as a hijacking candidate would write it.
_INSTRUCTION = re.compile(
    r"""(?:\b(?:choose|pick|select)\s+candidate\s+|\bbest_candidate_id["']?\s*[:=]\s*["']?)([A-Za-z0-9_.#-]+)""",
    re.I,
)

# Each mock model speaks in one of these voices, chosen by its name, so a panel of mocks
# shows visibly different candidates.
_VOICES = (
    ("concise", "In short: {gist}. The main point is to {advice_0}."),
    (
        "structured",
        "Here is a structured view of {topic}:\n1. {advice_0_cap}.\n2. {advice_1_cap}.\n"
        "3. Watch for {risk}.\nOverall: {gist}.",
    ),
    (
        "cautious",
        "It depends on context, but for {topic} I would {advice_1}. Be careful about {risk}; "
        "{advice_2}. A reasonable summary: {gist}.",
    ),
)
_ADVICE = (
    "start from the simplest approach that works",
    "measure before optimising",
    "state the assumptions explicitly",
    "check the edge cases first",
    "prefer small, reversible steps",
    "compare at least two alternatives",
    "write down how you will verify the result",
)
_RISKS = ("hidden assumptions", "off-by-one errors", "stale data", "unclear requirements", "silent failures")


def _voice_of(model: str) -> str:
    """A model named after a voice ("mock-cautious") speaks in it; any other name picks one by hash."""
    for name, template in _VOICES:
        if name in model:
            return template
    return _VOICES[_digest(model) % len(_VOICES)][1]


def _words(text: str) -> list[str]:
    return re.findall(r"\S+\s*", text)


def _digest(*parts: Any) -> int:
    raw = json.dumps(parts, sort_keys=True, default=str).encode()
    return int.from_bytes(hashlib.sha256(raw).digest()[:8], "big")


class MockAdapter:
    """An offline model that answers plausibly and deterministically."""

    provider = "mock"

    def __init__(self, endpoint: EndpointConfig) -> None:
        self.model = endpoint.model
        self.settings = endpoint.mock
        self.context_window = endpoint.context_window
        self._failures = random.Random(endpoint.mock.seed)
        # `mock.knows`: a task set answered right with probability `mock.accuracy` (for `fusionkit eval`).
        self._knowledge: MockKnowledge | None = None
        if endpoint.mock.knows:
            from bridge.adapters.mock_knowledge import MockKnowledge

            self._knowledge = MockKnowledge.load(endpoint.mock.knows, endpoint.mock.accuracy)

    async def aclose(self) -> None:
        return None

    # -- public API ---------------------------------------------------------------------------

    async def complete(self, request: ChatRequest, ctx: CallContext) -> ChatCompletion:
        await self._before_answer()
        message, finish, usage = self._reply(request)
        if self.settings.tokens_per_s > 0:
            await asyncio.sleep(usage.completion_tokens / self.settings.tokens_per_s)
        return ChatCompletion(model=self.model, choices=[Choice(message=message, finish_reason=finish)], usage=usage)

    async def stream(self, request: ChatRequest, ctx: CallContext) -> AsyncIterator[ChatCompletionChunk]:
        await self._before_answer()
        message, finish, usage = self._reply(request)
        pause = 1 / self.settings.tokens_per_s if self.settings.tokens_per_s > 0 else 0.0
        for piece in _words(message.content or ""):
            yield ChatCompletionChunk(choices=[ChunkChoice(delta=Delta(content=piece))])
            await asyncio.sleep(pause)
        for index, call in enumerate(message.tool_calls or []):
            head = ToolCallDelta(
                index=index,
                id=call.id,
                type="function",
                function=FunctionCallDelta(name=call.function.name, arguments=""),
            )
            yield ChatCompletionChunk(choices=[ChunkChoice(delta=Delta(tool_calls=[head]))])
            args = call.function.arguments
            for start in range(0, len(args), 8):
                part = ToolCallDelta(index=index, function=FunctionCallDelta(arguments=args[start : start + 8]))
                yield ChatCompletionChunk(choices=[ChunkChoice(delta=Delta(tool_calls=[part]))])
                await asyncio.sleep(pause)
        yield ChatCompletionChunk(choices=[ChunkChoice(finish_reason=finish)])
        yield ChatCompletionChunk(choices=[], usage=usage)

    # -- behaviour ----------------------------------------------------------------------------

    async def _before_answer(self) -> None:
        if self.settings.latency_ms > 0:
            await asyncio.sleep(self.settings.latency_ms / 1000)
        if self.settings.fail_rate > 0 and self._failures.random() < self.settings.fail_rate:
            raise upstream_failure(f"mock model {self.model} failed on purpose (fail_rate={self.settings.fail_rate})")

    def _reply(self, request: ChatRequest) -> tuple[AssistantMessage, str, Usage]:
        refuse_logprobs(request, "mock")  # whatever the answer: the mock has no token probabilities
        self._check_window(request)
        known = self._knowledge.reply(request, model=self.model, seed=self.settings.seed) if self._knowledge else None
        return known or self._answer(request)

    def _check_window(self, request: ChatRequest) -> None:
        if self.context_window is None:
            return
        prompt = _prompt_tokens(request)
        if prompt + (request.token_limit or 0) > self.context_window:
            raise bad_request(
                f"mock model {self.model}: the prompt ({prompt} tokens) and max_tokens "
                f"({request.token_limit}) exceed its context window of {self.context_window} tokens",
                param="messages",
                code="context_length_exceeded",
            )

    def _answer(self, request: ChatRequest) -> tuple[AssistantMessage, str, Usage]:
        prompt_text = "\n".join(message_text(m) for m in request.messages)
        prompt_tokens = _prompt_tokens(request)
        seed = _digest(self.model, self.settings.seed, request.seed, request.temperature, prompt_text)

        tool_call = self._maybe_call_tool(request, seed)
        if tool_call is not None:
            message = AssistantMessage(content=None, tool_calls=[tool_call])
            completion = len(_words(tool_call.function.arguments)) + 5
            return message, "tool_calls", Usage.of(prompt_tokens, completion)

        candidates = candidate_blocks(prompt_text)
        form = request.response_format
        wants_json = form is not None and form.type != "text"
        if wants_json and "<final_answer>" in prompt_text:
            text = json.dumps({"verdict": "pass", "issues": [], "note": f"{MOCK_LABEL} {self.model}"})
        elif _asks_for_analysis(request, prompt_text, bool(candidates)):
            shown = candidates or _labelled_candidates(prompt_text)
            text = self._judge_analysis(shown, instructed_choice(prompt_text, [cid for cid, _, _ in shown]))
        else:
            text = self._synthesis(candidates) if candidates else self._plain_answer(request, seed)
            if form is not None and form.type == "json_schema":
                text = json.dumps(instance((form.json_schema or {}).get("schema", {}), text))
            elif wants_json:
                text = json.dumps({"answer": text})

        finish = "stop"
        for stop in request.stop_list:
            if stop and stop in text:
                text = text[: text.index(stop)]
        pieces = _words(text)
        limit = request.token_limit
        if limit is not None and len(pieces) > limit:
            text, finish = "".join(pieces[:limit]), "length"
            pieces = pieces[:limit]
        return AssistantMessage(content=text), finish, Usage.of(prompt_tokens, len(pieces))

    def _plain_answer(self, request: ChatRequest, seed: int) -> str:
        last = _last_turn(request)
        if last.role == "tool":
            return f"[{MOCK_LABEL} {self.model}] From the tool result, the answer is {message_text(last)[:200]}"
        question = next((message_text(m) for m in reversed(request.messages) if m.role == "user"), "")
        topic = " ".join(question.split()[:12]).rstrip("?.!") or "this request"
        template = _voice_of(self.model)
        rng = random.Random(seed)
        advice = rng.sample(_ADVICE, 3)
        values = {
            "topic": f'"{topic}"',
            "gist": f"{advice[0]} and {advice[1]}",
            "risk": rng.choice(_RISKS),
            **{f"advice_{i}": a for i, a in enumerate(advice)},
            **{f"advice_{i}_cap": a[0].upper() + a[1:] for i, a in enumerate(advice)},
        }
        return f"[{MOCK_LABEL} {self.model}] " + template.format(**values)

    def _judge_analysis(self, candidates: list[tuple[str, str, str]], instructed: str | None) -> str:
        """The analysis: the longest candidate is the best, unless an instruction outside a fence says otherwise."""
        if not candidates:
            # A judge prompt whose candidates it cannot tell apart still gets analysis JSON that parses.
            candidates = [("c1", "unknown", "")]
        ids = [cid for cid, _, _ in candidates]
        ranked = sorted(candidates, key=lambda c: (c[0] != instructed, -len(c[2]), c[0]))
        best_id, best_model, _ = ranked[0]
        why = "as instructed" if instructed else "the most complete; the others add useful caveats"
        sentences = {
            cid: [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()] for cid, _, text in candidates
        }
        analysis = {
            "consensus": [f"All {len(ids)} candidates ({', '.join(ids)}) address the question directly."],
            "contradictions": [f"{a} and {b} recommend different first steps." for a, b in itertools.pairwise(ids)][:2],
            "unique_insights": [
                f"{cid} ({model}): {(sentences[cid] or ['(no text seen)'])[-1][:120]}" for cid, model, _ in candidates
            ],
            "coverage_gaps": ["None of the candidates gives a concrete example."],
            "likely_errors": [],
            "ranking": [cid for cid, _, _ in ranked],
            "best_candidate_id": best_id,
            "rationale": f"{best_id} ({best_model}) is the best: {why}. [{MOCK_LABEL} {self.model}]",
        }
        return json.dumps(analysis)

    def _synthesis(self, candidates: list[tuple[str, str, str]]) -> str:
        ids = ", ".join(c for c, _, _ in candidates)
        parts = [f"[{MOCK_LABEL} {self.model}] Fused answer drawing on {ids}:"]
        for cid, _, text in candidates:
            body = re.sub(r"^\[[^\]]*\]\s*", "", text).strip()
            # An agent trajectory states its final output; each voice ends on its summary sentence.
            final = re.search(r"^final output: (.+)$", body, re.M)
            last = [final.group(1)] if final else [s for s in re.split(r"(?<=[.!?])\s+", body) if s.strip()][-1:]
            parts.append(f"- {(last or [body])[0].strip()} ({cid})")
        return "\n".join(parts)

    def _maybe_call_tool(self, request: ChatRequest, seed: int) -> ToolCall | None:
        if not request.tools or request.tool_choice == "none" or _last_turn(request).role == "tool":
            return None
        question = next((message_text(m) for m in reversed(request.messages) if m.role == "user"), "")
        tool, given = _tool_named_in(question, request.tools)
        choice = request.tool_choice
        if choice is not None and not isinstance(choice, str) and choice.function.name != tool.function.name:
            tool = next(t for t in request.tools if t.function.name == choice.function.name)
            given = None  # the arguments spelled out were for another tool
        arguments = json.dumps(given if given is not None else _arguments_for(tool, question), sort_keys=True)
        call_id = f"call_{_digest(seed, tool.function.name) % 10**12:012d}"
        return ToolCall(id=call_id, function=FunctionCall(name=tool.function.name, arguments=arguments))


# How other clients label candidates in a judge prompt: "Candidate c1", "### Candidate 2", "candidate_id": "c3".
_FOREIGN_LABEL = re.compile(
    r"""(?:candidate_id["']?\s*[:=]\s*["']([A-Za-z0-9_.-]+)|^[\s#*\[]*candidate[\s:#-]+([A-Za-z0-9_.-]+))""",
    re.I | re.M,
)


def _prompt_tokens(request: ChatRequest) -> int:
    """The mock's token count of a prompt: its words, and 3 a message."""
    return len(_words("\n".join(message_text(m) for m in request.messages))) + 3 * len(request.messages)


def candidate_blocks(prompt_text: str) -> list[tuple[str, str, str]]:
    """(id, model, text) of each candidate: the fenced ones when the prompt fences them, else the labelled ones."""
    fenced = [
        (html.unescape(cid), html.unescape(model), body) for _, cid, model, body in FENCED_BLOCK.findall(prompt_text)
    ]
    return fenced or CANDIDATE_BLOCK.findall(prompt_text)


def instructed_choice(prompt_text: str, ids: list[str]) -> str | None:
    """The candidate the last instruction outside every fence tells the judge to choose (one it was shown)."""
    outside = FENCED_BLOCK.sub("", prompt_text)
    chosen = [m.group(1).rstrip(".") for m in _INSTRUCTION.finditer(outside) if m.group(1).rstrip(".") in ids]
    return chosen[-1] if chosen else None


def _asks_for_analysis(request: ChatRequest, prompt_text: str, has_candidates: bool) -> bool:
    """Is this a judge's request (by its schema, or an instruction to answer with the analysis JSON)?"""
    if "<judge_analysis>" in prompt_text:
        return False  # a synthesis request carries the judge's analysis; it does not ask for one
    form = request.response_format
    wants_json = form is not None and form.type != "text"
    if form is not None and "best_candidate_id" in json.dumps(form.json_schema or {}):
        return True
    lowered = prompt_text.lower()
    instructed = "best_candidate_id" in lowered or ("consensus" in lowered and "contradictions" in lowered)
    if instructed and (wants_json or "json" in lowered):
        return True
    return has_candidates and wants_json


def _labelled_candidates(prompt_text: str) -> list[tuple[str, str, str]]:
    ids = dict.fromkeys(a or b for a, b in _FOREIGN_LABEL.findall(prompt_text))
    return [(cid, "unknown", "") for cid in ids]


def _last_turn(request: ChatRequest) -> ChatMessage:
    """The last message that is not system text (agents such as Claude Code append system turns)."""
    return next((m for m in reversed(request.messages) if m.role not in ("system", "developer")), request.messages[-1])


def _tool_named_in(question: str, tools: list[Tool]) -> tuple[Tool, dict[str, Any] | None]:
    """The tool the user's message names (the one named last; else the first tool) and the arguments
    it spells out for it as a JSON object after its name, if any: `Call Bash with {"command": "ls"}`
    calls Bash with them.

    Agents offer dozens of tools and put the task last in the message, after their own reminders;
    naming the tool and its arguments is how a test or demo makes the mock take a useful step.
    """
    named = [
        (m.start(), t)
        for t in tools
        for m in re.finditer(rf"(?<![\w-]){re.escape(t.function.name)}(?![\w-])", question)
    ]
    if not named:
        return tools[0], None
    at, tool = max(named, key=lambda found: found[0])
    decoder = json.JSONDecoder()
    for start in (m.start() for m in re.finditer(r"\{", question[at:])):
        start += at
        try:
            value, _ = decoder.raw_decode(question, start)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return tool, value
    return tool, None


def _arguments_for(tool: Tool, question: str) -> dict[str, Any]:
    """Plausible arguments from the tool's JSON schema: strings get the user's words."""
    schema = tool.function.parameters or {}
    props: dict[str, Any] = schema.get("properties", {})
    required = schema.get("required", list(props))
    args: dict[str, Any] = {}
    for name in required:
        kind = props.get(name, {}).get("type", "string")
        enum = props.get(name, {}).get("enum")
        if enum:
            args[name] = enum[0]
        elif kind in ("integer", "number"):
            args[name] = 1
        elif kind == "boolean":
            args[name] = True
        elif kind == "array":
            args[name] = []
        elif kind == "object":
            args[name] = {}
        else:
            args[name] = " ".join(question.split()[:8]) or name
    return args
