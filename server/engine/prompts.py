"""The requests the engine sends to the judge, the synthesizer, the verifier and the agent step.

    built = judge_request(endpoint, base, candidates, prompts=prompts, structured=True, max_tokens=2048)
    request = await record_prompt(run.recorder, built)   # the `context.packed` event, the prompt as an artifact

Each request is the role's prompt (a file one can change: `server.prompt_files`) as its system
message, and what it works on: the conversation, the candidates (each fenced with the request's
random code: `server.engine.fence`), the judge's analysis or the answer to check. What it works on
is packed into the endpoint's context window (`server.engine.packing`), and the report of that
packing, with the prompt's sha256, is recorded in the run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bridge.endpoint import EndpointConfig
from bridge.protocol import ChatMessage, ChatRequest, ResponseFormat, message_text
from server.engine.candidates import Candidate
from server.engine.fence import Fence, escape
from server.engine.judge import JUDGE_SCHEMA, JudgeAnalysis
from server.engine.packing import Budget, PackReport, Piece, pack
from server.engine.recorder import Recorder
from server.engine.result import Verification
from server.engine.tokens import counter_for
from server.prompt_files import Prompt, PromptSet

__all__ = [
    "PromptedRequest",
    "agent_request",
    "candidates_text",
    "conversation_text",
    "judge_request",
    "parse_verdict",
    "record_prompt",
    "synthesis_request",
    "verifier_request",
]

# What a chat template adds around each message, in tokens (OpenAI documents 3 to 4); counted as fixed.
MESSAGE_OVERHEAD = 4
# A reply budget for requests that carry none (a `:step` request without max_tokens).
DEFAULT_REPLY_TOKENS = 1024
CONVERSATION = "conversation"


@dataclass(frozen=True)
class PromptedRequest:
    """A built request, the prompt it carries and how its context was packed."""

    role: str
    request: ChatRequest
    prompt: Prompt
    packing: PackReport

    def payload(self) -> dict[str, Any]:
        """The `context.packed` event: which prompt (by sha256) and what was elided or left out, and why."""
        return {
            "role": self.role,
            "model_id": self.request.model,
            "prompt": self.prompt.record(),
            **self.packing.payload(),
        }


async def record_prompt(recorder: Recorder, built: PromptedRequest) -> ChatRequest:
    """Record the prompt's text (an artifact, by its sha256) and the packing report; the request to send."""
    await recorder.artifact(built.prompt.text, "text/markdown")
    await recorder.event("context.packed", built.payload())
    return built.request


# -- what the requests are made of ----------------------------------------------------------------


def _render_message(message: ChatMessage) -> str:
    text = message_text(message)
    if message.tool_calls:
        calls = "; ".join(f"{c.function.name}({c.function.arguments})" for c in message.tool_calls)
        text = f"{text}\n[tool calls: {calls}]".strip()
    if message.role == "tool":
        return f"[tool result for {message.tool_call_id}]: {text}"
    return f"[{message.role}]: {text}"


def conversation_text(messages: list[ChatMessage]) -> str:
    """The whole conversation as text, one `[role]: ...` entry per message (packing cuts it, not this)."""
    return escape("\n".join(_render_message(m) for m in messages))


def _candidate_body(candidate: Candidate) -> str:
    calls = "\n".join(f"[proposes tool call {t.function.name}({t.function.arguments})]" for t in candidate.tool_calls)
    return f"{candidate.text}\n{calls}".strip() if calls else candidate.text


def _key(candidate: Candidate) -> str:
    return f"candidate:{candidate.candidate_id}"


def candidates_text(candidates: Sequence[Candidate], bodies: dict[str, str], fence: Fence, what: str) -> str:
    """The candidates packing kept (their bodies by key), each fenced, after the line that declares the fences."""
    shown = [c for c in candidates if _key(c) in bodies]
    blocks = [f"{fence.open(c.candidate_id, c.endpoint_id)}\n{escape(bodies[_key(c)])}\n{fence.close()}" for c in shown]
    # The engine's own notes go after the fence, where the candidate's text cannot reach them.
    blocks = [
        block
        + (
            f"\n[{c.candidate_id} does not give the JSON the user asked for: {escape(c.schema_error)}]"
            if c.schema_error
            else ""
        )
        for block, c in zip(blocks, shown, strict=True)
    ]
    return "\n\n".join([fence.declaration(len(shown), what), *blocks])


def _candidate_pieces(candidates: Sequence[Candidate]) -> list[Piece]:
    # A candidate not in the asked-for JSON is dropped as early as a failed one when space runs out.
    return [
        Piece(_key(c), "candidate", _candidate_body(c), failed=c.failed or c.schema_error is not None)
        for c in candidates
    ]


def _conversation_piece(base: ChatRequest) -> Piece:
    return Piece(CONVERSATION, "conversation", conversation_text(base.messages))


def _fence(candidates: Sequence[Candidate], fence: Fence | None) -> Fence:
    return fence or Fence.new(_candidate_body(c) for c in candidates)


# -- building and packing -------------------------------------------------------------------------

Layout = Callable[[dict[str, str]], str]


def _packed(
    endpoint: EndpointConfig,
    system: str,
    pieces: list[Piece],
    layout: Layout,
    *,
    max_tokens: int,
    fixed_extra: str = "",
    messages: int = 2,
) -> tuple[str, PackReport]:
    """The user message `layout` makes of the packed pieces, and the packing's report.

    The fixed part is everything but the pieces: the system message, the frame `layout` puts around
    them (measured with every piece empty), `fixed_extra` (a schema, the conversation an agent step
    carries as messages) and each message's template overhead.
    """
    counter = counter_for(endpoint)
    frame = layout({p.key: "" for p in pieces})
    fixed = counter.count(system) + counter.count(frame) + counter.count(fixed_extra) + MESSAGE_OVERHEAD * messages
    packed = pack(pieces, Budget.of(endpoint, max_tokens), counter, fixed_tokens=fixed)
    return layout(packed.texts), packed.report


def _request(model: str, system: str, prompt: str, /, **fields: object) -> ChatRequest:
    return ChatRequest.model_validate(
        {
            "model": model,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": prompt}],
            **{k: v for k, v in fields.items() if v is not None},
        }
    )


def _answer_form(base: ChatRequest) -> dict[str, object]:
    """What the client asked of its answer's form. The synthesizer writes that answer, so it gets all of it."""
    return {
        "temperature": base.temperature,
        "top_p": base.top_p,
        "max_tokens": base.token_limit,
        "seed": base.seed,
        "stop": base.stop,
        "user": base.user,
        "response_format": base.response_format,
    }


def _reviewer_form(base: ChatRequest, max_tokens: int) -> dict[str, object]:
    """The judge and the verifier write for the engine, not for the client: their own token budget, no
    client stop sequence or format that could cut or bend their JSON."""
    return {"temperature": 0, "max_tokens": max_tokens, "seed": base.seed, "user": base.user}


def judge_request(
    endpoint: EndpointConfig,
    base: ChatRequest,
    candidates: list[Candidate],
    *,
    prompts: PromptSet,
    structured: bool,
    max_tokens: int,
    fence: Fence | None = None,
) -> PromptedRequest:
    fence = _fence(candidates, fence)

    def layout(texts: dict[str, str]) -> str:
        return (
            f"<conversation>\n{texts[CONVERSATION]}\n</conversation>\n\n"
            f"{candidates_text(candidates, texts, fence, 'candidate answers')}\n\nReturn the JSON analysis."
        )

    schema = json.dumps(JUDGE_SCHEMA) if structured else ""
    pieces = [_conversation_piece(base), *_candidate_pieces(candidates)]
    user, report = _packed(endpoint, prompts.judge.text, pieces, layout, max_tokens=max_tokens, fixed_extra=schema)
    response_format = ResponseFormat(type="json_schema", json_schema=JUDGE_SCHEMA) if structured else None
    request = _request(
        endpoint.id, prompts.judge.text, user, **_reviewer_form(base, max_tokens), response_format=response_format
    )
    return PromptedRequest("judge", request, prompts.judge, report)


def synthesis_request(
    endpoint: EndpointConfig,
    base: ChatRequest,
    candidates: list[Candidate],
    analysis: JudgeAnalysis | None,
    raw_analysis: str,
    *,
    prompts: PromptSet,
    fence: Fence | None = None,
) -> PromptedRequest:
    fence = _fence(candidates, fence)
    judged = analysis.model_dump_json(indent=1) if analysis is not None else raw_analysis

    def layout(texts: dict[str, str]) -> str:
        return (
            f"<conversation>\n{texts[CONVERSATION]}\n</conversation>\n\n"
            f"{candidates_text(candidates, texts, fence, 'candidate answers')}\n\n"
            f"<judge_analysis>\n{escape(texts['analysis'])}\n</judge_analysis>\n\n"
            "Write the final answer to the user's last message."
        )

    pieces = [_conversation_piece(base), *_candidate_pieces(candidates), Piece("analysis", "analysis", judged)]
    reply = base.token_limit or DEFAULT_REPLY_TOKENS
    user, report = _packed(endpoint, prompts.synthesizer.text, pieces, layout, max_tokens=reply)
    request = _request(endpoint.id, prompts.synthesizer.text, user, **_answer_form(base))
    return PromptedRequest("synthesizer", request, prompts.synthesizer, report)


def agent_request(
    endpoint: EndpointConfig,
    base: ChatRequest,
    candidates: list[Candidate],
    *,
    prompts: PromptSet,
    fence: Fence | None = None,
) -> PromptedRequest:
    """The whole conversation and its tools, with the candidates as reference in a system message.

    The agent's own system prompt (a harness's: Claude Code's, Codex's) stays the base: the reference
    follows the conversation's leading system messages and comes before its first turn, so the
    conversation still ends where the client left it (a user turn or a tool result), which is what
    decides whether the next step is a call or an answer. The conversation goes as it is (its tool
    calls and results must pair up); only the candidates are packed.
    """
    fence = _fence(candidates, fence)

    def layout(texts: dict[str, str]) -> str:
        return f"{prompts.agent.text.rstrip()}\n\n{candidates_text(candidates, texts, fence, 'proposals')}"

    carried = json.dumps([m.model_dump(exclude_none=True) for m in base.messages]) + json.dumps(
        [t.model_dump(exclude_none=True) for t in base.tools or []]
    )
    reply = base.token_limit or DEFAULT_REPLY_TOKENS
    # The prompt opens the reference (the frame), so there is no system text of its own to count.
    reference, report = _packed(
        endpoint,
        "",
        _candidate_pieces(candidates),
        layout,
        max_tokens=reply,
        fixed_extra=carried,
        messages=len(base.messages) + 1,
    )
    message = ChatMessage(role="system", content=reference)
    lead = next((i for i, m in enumerate(base.messages) if m.role not in ("system", "developer")), len(base.messages))
    messages = [*base.messages[:lead], message, *base.messages[lead:]]
    request = base.model_copy(
        update={"model": endpoint.id, "messages": messages, "stream": False, "stream_options": None}
    )
    return PromptedRequest("agent", request, prompts.agent, report)


def verifier_request(
    endpoint: EndpointConfig, base: ChatRequest, final_text: str, *, prompts: PromptSet, max_tokens: int
) -> PromptedRequest:
    def layout(texts: dict[str, str]) -> str:
        return (
            f"<conversation>\n{texts[CONVERSATION]}\n</conversation>\n\n"
            f"<final_answer>\n{escape(texts['answer'])}\n</final_answer>\n\nReturn the JSON verdict."
        )

    pieces = [_conversation_piece(base), Piece("answer", "answer", final_text)]
    user, report = _packed(endpoint, prompts.verifier.text, pieces, layout, max_tokens=max_tokens)
    request = _request(
        endpoint.id,
        prompts.verifier.text,
        user,
        **_reviewer_form(base, max_tokens),
        response_format=ResponseFormat(type="json_object"),
    )
    return PromptedRequest("verifier", request, prompts.verifier, report)


def parse_verdict(text: str, verifier_model_id: str) -> Verification:
    start, end = text.find("{"), text.rfind("}")
    try:
        data = json.loads(text[start : end + 1]) if 0 <= start < end else None
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict) or data.get("verdict") not in ("pass", "fail"):
        return Verification(verifier_model_id, None, [], "the verifier returned no JSON verdict")
    issues = data.get("issues") or []
    return Verification(
        verifier_model_id, data["verdict"] == "pass", [str(i) for i in issues] if isinstance(issues, list) else []
    )
