"""Router mode: pick single, self or panel from the prompt, and say why.

The heuristic is deliberately simple and explainable; every decision carries its reasons so
a user can see (in the run record) why a request was fused or not.
"""

from __future__ import annotations

import re

from bridge.protocol import ChatRequest, message_text

__all__ = ["choose_route"]

_PANEL_WORDS = re.compile(
    r"\b(compare|comparison|trade-?offs?|pros and cons|design|architecture|should i|recommend|strategy|"
    r"evaluate|review|analy[sz]e|explain why|plan)\b",
    re.I,
)
_SELF_WORDS = re.compile(r"\b(calculate|compute|solve|prove|how many|step by step|algorithm|regex|sql)\b", re.I)
_CODE = re.compile(r"```|\bdef |\bclass |\bfunction\b|;\s*$", re.M)
SHORT_PROMPT_WORDS = 12
LONG_PROMPT_WORDS = 80


def choose_route(request: ChatRequest, *, endpoint_count: int) -> tuple[str, list[str]]:
    """(mode, reasons) for a request in router mode."""
    last_user = next((message_text(m) for m in reversed(request.messages) if m.role == "user"), "")
    words = len(last_user.split())
    reasons: list[str] = []
    if request.tools:
        reasons.append("the request carries tools: one agent step is answered by one model")
        return "single", reasons
    open_ended = _PANEL_WORDS.search(last_user)
    if open_ended:
        reasons.append(f"open-ended question ('{open_ended.group(0)}')")
        mode = "panel"
    elif words >= LONG_PROMPT_WORDS:
        reasons.append(f"long prompt ({words} words >= {LONG_PROMPT_WORDS})")
        mode = "panel"
    elif _SELF_WORDS.search(last_user) or _CODE.search(last_user):
        reasons.append("precise task (code, maths or a query): several samples of one model are compared")
        mode = "self"
    elif words < SHORT_PROMPT_WORDS:
        reasons.append(f"short prompt ({words} words < {SHORT_PROMPT_WORDS}): one model is enough")
        mode = "single"
    else:
        reasons.append("general question of moderate length")
        mode = "panel"
    if mode == "panel" and endpoint_count < 2:
        reasons.append("only one endpoint is configured: sampling it several times instead")
        mode = "self"
    return mode, reasons
