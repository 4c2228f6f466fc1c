"""The requests the engine sends to the judge, the synthesizer and the verifier.

Each sees the conversation (bounded, with a marker where it was cut, never silently) and the
candidates, labelled `<candidate id="c1" model="fast">` so any model, and the mock, can tell
them apart.
"""

from __future__ import annotations

import html
import json

from bridge.protocol import ChatMessage, ChatRequest, ResponseFormat, message_text
from server.engine.candidates import Candidate
from server.engine.judge import JUDGE_SCHEMA, JudgeAnalysis
from server.engine.result import Verification

__all__ = ["agent_request", "conversation_text", "judge_request", "synthesis_request", "verifier_request"]

MAX_CONVERSATION_CHARS = 16_000
MAX_MESSAGE_CHARS = 4_000

JUDGE_SYSTEM = (
    "You are the judge of a panel of AI models that answered the same conversation. Compare the candidate "
    "answers: where they agree (consensus), where they contradict each other, insights only one of them has, "
    "what none of them covers, and statements that are likely wrong. Rank the candidates best first by id. "
    "Reply with one JSON object with the keys consensus, contradictions, unique_insights, coverage_gaps, "
    "likely_errors (lists of strings), ranking (list of candidate ids), best_candidate_id and rationale."
)
SYNTH_SYSTEM = (
    "You write the final answer for the user. You are given the conversation, several candidate answers "
    "from other models and a judge's analysis of them. Write the single best answer to the user's last "
    "message: keep what the candidates agree on, resolve contradictions using the analysis, add the unique "
    "insights that are right, fill the gaps, and drop likely errors. Answer the user directly; do not "
    "mention the candidates, the panel or the judge."
)
AGENT_SYSTEM = (
    "You are the agent taking the next step of this conversation. Several other models proposed a next step; "
    "their proposals (text answers and tool calls) follow as reference. Take the best next step yourself: "
    "either answer the user, or call the tools that are needed, with the right arguments. Do not mention the "
    "proposals.\n\n"
)
VERIFY_SYSTEM = (
    "You check a final answer against the conversation it answers. Reply with one JSON object: "
    '{"verdict": "pass" or "fail", "issues": [strings]}.'
)


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[... truncated {len(text) - limit} characters ...]"


def _render_message(message: ChatMessage) -> str:
    text = message_text(message)
    if message.tool_calls:
        calls = "; ".join(f"{c.function.name}({c.function.arguments})" for c in message.tool_calls)
        text = f"{text}\n[tool calls: {calls}]".strip()
    if message.role == "tool":
        return f"[tool result for {message.tool_call_id}]: {_truncate(text, MAX_MESSAGE_CHARS)}"
    return f"[{message.role}]: {_truncate(text, MAX_MESSAGE_CHARS)}"


def conversation_text(messages: list[ChatMessage], limit: int = MAX_CONVERSATION_CHARS) -> str:
    """The conversation as text, newest messages kept first when it must be cut."""
    rendered = [_render_message(m) for m in messages]
    kept: list[str] = []
    total = 0
    for line in reversed(rendered):
        if kept and total + len(line) > limit:
            break
        kept.append(line)
        total += len(line)
    omitted = len(rendered) - len(kept)
    head = [f"[... {omitted} earlier messages omitted ...]"] if omitted else []
    return "\n".join(head + list(reversed(kept)))


def _candidates_text(candidates: list[Candidate]) -> str:
    blocks = []
    for c in candidates:
        body = c.text
        if c.tool_calls:
            calls = "\n".join(f"[proposes tool call {t.function.name}({t.function.arguments})]" for t in c.tool_calls)
            body = f"{body}\n{calls}".strip()
        # A trajectory's model label is the caller's text: quoted, it cannot break out of its attribute.
        label = html.escape(c.endpoint_id, quote=True)
        blocks.append(f'<candidate id="{c.candidate_id}" model="{label}">\n{body}\n</candidate>')
    return "\n\n".join(blocks)


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
    model: str, base: ChatRequest, candidates: list[Candidate], *, structured: bool, max_tokens: int
) -> ChatRequest:
    user = (
        f"<conversation>\n{conversation_text(base.messages)}\n</conversation>\n\n"
        f"{_candidates_text(candidates)}\n\nReturn the JSON analysis."
    )
    response_format = ResponseFormat(type="json_schema", json_schema=JUDGE_SCHEMA) if structured else None
    return _request(model, JUDGE_SYSTEM, user, **_reviewer_form(base, max_tokens), response_format=response_format)


def synthesis_request(
    model: str, base: ChatRequest, candidates: list[Candidate], analysis: JudgeAnalysis | None, raw_analysis: str
) -> ChatRequest:
    judged = analysis.model_dump_json(indent=1) if analysis is not None else raw_analysis
    user = (
        f"<conversation>\n{conversation_text(base.messages)}\n</conversation>\n\n"
        f"{_candidates_text(candidates)}\n\n<judge_analysis>\n{_truncate(judged, 8000)}\n</judge_analysis>\n\n"
        "Write the final answer to the user's last message."
    )
    return _request(model, SYNTH_SYSTEM, user, **_answer_form(base))


def agent_request(model: str, base: ChatRequest, candidates: list[Candidate]) -> ChatRequest:
    """The whole conversation and its tools, with the candidates as reference in a leading system message.

    The reference goes first so the conversation still ends where the client left it (a user turn or
    a tool result), which is what decides whether the next step is a call or an answer.
    """
    reference = ChatMessage(role="system", content=AGENT_SYSTEM + _candidates_text(candidates))
    return base.model_copy(
        update={"model": model, "messages": [reference, *base.messages], "stream": False, "stream_options": None}
    )


def verifier_request(model: str, base: ChatRequest, final_text: str, *, max_tokens: int) -> ChatRequest:
    user = (
        f"<conversation>\n{conversation_text(base.messages)}\n</conversation>\n\n"
        f"<final_answer>\n{_truncate(final_text, 8000)}\n</final_answer>\n\nReturn the JSON verdict."
    )
    return _request(
        model,
        VERIFY_SYSTEM,
        user,
        **_reviewer_form(base, max_tokens),
        response_format=ResponseFormat(type="json_object"),
    )


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
