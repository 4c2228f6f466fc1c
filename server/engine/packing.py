"""Packing what the judge and the synthesizer are shown into their endpoint's context window.

    budget = Budget.of(endpoint, max_tokens=1024)
    packed = pack([Piece("conversation", "conversation", text), Piece("candidate:c1", "candidate", text)],
                  budget, counter_for(endpoint), fixed_tokens=350)
    packed.texts["candidate:c1"], packed.report.payload()

The budget is the endpoint's context window, less a safety margin and the tokens the reply may
take. The instructions and the prompt's frame (`fixed_tokens`) come first; the pieces share the
rest. When they do not fit, every piece over an equal share keeps its head and its tail and loses
its middle, with a marker that says how much went (a trajectory's first steps and its last steps,
verification, diff and final output; a conversation's first and newest turns). When a share would
be too small to be worth reading, candidates are left out: failed ones first, then the others in
order, never the last successful one. The report says what was elided and dropped, and why.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from bridge.endpoint import EndpointConfig
from server.engine.tokens import TokenCounter

__all__ = ["Budget", "PackReport", "Packed", "Piece", "elide", "pack"]

PieceKind = Literal["conversation", "candidate", "analysis", "answer"]

# A share smaller than this shows too little of a candidate to judge it: leave a candidate out instead.
MIN_SHARE = 192
# Never elide a piece below this, even when that overflows the budget (the report then says so).
MIN_SHOWN = 48
# What the elision marker may take.
MARKER_TOKENS = 32
# Of what an elided piece keeps, the share at its head; the tail (final output, newest turns) gets more.
HEAD_SHARE = 0.4
_STEP_LINE = re.compile(r"^step \d+ ", re.M)


@dataclass(frozen=True)
class Budget:
    """What a request may hold: the context window, less a safety margin (5 %, at least 128 tokens, for
    counting error and the chat template) and the tokens reserved for the reply."""

    context_window: int
    max_tokens: int

    @classmethod
    def of(cls, endpoint: EndpointConfig, max_tokens: int) -> Budget:
        return cls(endpoint.window, max_tokens)

    @property
    def margin(self) -> int:
        return max(128, self.context_window // 20)

    @property
    def input_tokens(self) -> int:
        return max(self.context_window - self.margin - self.max_tokens, 0)


@dataclass(frozen=True)
class Piece:
    """One part of the prompt packing may cut: the conversation, a candidate, the judge's analysis, the answer.

    Only candidates are ever left out; `failed` ones (a trajectory that did not succeed) first.
    """

    key: str
    kind: PieceKind
    text: str
    failed: bool = False


@dataclass(frozen=True)
class PieceReport:
    key: str
    kind: PieceKind
    tokens: int
    shown_tokens: int
    elided_tokens: int = 0
    dropped: str | None = None  # why it was left out


@dataclass(frozen=True)
class PackReport:
    budget: Budget
    counter: TokenCounter
    fixed_tokens: int
    pieces: list[PieceReport]

    @property
    def prompt_tokens(self) -> int:
        return self.fixed_tokens + sum(p.shown_tokens for p in self.pieces)

    @property
    def fits(self) -> bool:
        return self.prompt_tokens <= self.budget.input_tokens

    def payload(self) -> dict[str, Any]:
        return {
            **self.counter.describe(),
            "context_window": self.budget.context_window,
            "margin": self.budget.margin,
            "max_tokens": self.budget.max_tokens,
            "input_budget": self.budget.input_tokens,
            "fixed_tokens": self.fixed_tokens,
            "prompt_tokens": self.prompt_tokens,
            "fits": self.fits,
            "packed": any(p.elided_tokens or p.dropped for p in self.pieces),
            # vars(), not asdict(): a report's fields are plain values, and asdict's deep copy showed up per call.
            "pieces": [{k: v for k, v in vars(p).items() if v is not None} for p in self.pieces],
        }


@dataclass(frozen=True)
class Packed:
    """The text to show for each piece that was kept (by key), and the report."""

    texts: dict[str, str]
    report: PackReport


def pack(pieces: Sequence[Piece], budget: Budget, counter: TokenCounter, *, fixed_tokens: int) -> Packed:
    sizes = {p.key: counter.count(p.text) for p in pieces}
    available = budget.input_tokens - fixed_tokens
    kept = list(pieces)
    dropped: dict[str, str] = {}
    for victim in _drop_order(pieces):
        share = _share([sizes[p.key] for p in kept], available)
        if share is None or share >= MIN_SHARE:
            break
        kept.remove(victim)
        why = "a failed candidate" if victim.failed else "a candidate other than the last successful one"
        dropped[victim.key] = f"left out to fit the context window ({why})"
    share = _share([sizes[p.key] for p in kept], available)
    texts: dict[str, str] = {}
    reports: list[PieceReport] = []
    for piece in pieces:
        size = sizes[piece.key]
        if piece.key in dropped:
            reports.append(PieceReport(piece.key, piece.kind, size, 0, size, dropped[piece.key]))
            continue
        if share is None or size <= share:
            texts[piece.key] = piece.text
            reports.append(PieceReport(piece.key, piece.kind, size, size))
            continue
        texts[piece.key], shown = elide(piece.text, max(share, MIN_SHOWN), counter)
        reports.append(PieceReport(piece.key, piece.kind, size, shown, max(size - shown, 0)))
    return Packed(texts, PackReport(budget, counter, fixed_tokens, reports))


def _drop_order(pieces: Sequence[Piece]) -> list[Piece]:
    """Candidates in the order they are left out: failed ones, then successful ones but the last."""
    candidates = [p for p in pieces if p.kind == "candidate"]
    succeeded = [p for p in candidates if not p.failed]
    keep = succeeded[-1] if succeeded else (candidates[-1] if candidates else None)
    failed = [p for p in candidates if p.failed and p is not keep]
    return failed + [p for p in succeeded if p is not keep]


def _share(sizes: list[int], available: int) -> int | None:
    """The most tokens each piece may keep so that all fit (pieces under it keep everything); None: all fit."""
    if sum(sizes) <= available:
        return None
    remaining, left = max(available, 0), len(sizes)
    for size in sorted(sizes):
        level = remaining // left
        if size > level:
            return level
        remaining -= size
        left -= 1
    return None


def elide(text: str, target: int, counter: TokenCounter) -> tuple[str, int]:
    """`text` in at most `target` tokens: its head and tail, the middle replaced by a marker; and its count."""
    total = counter.count(text)
    if total <= target:
        return text, total
    chars_per_token = len(text) / total
    keep = max(target - MARKER_TOKENS, 0) * chars_per_token
    head_chars, tail_chars = int(keep * HEAD_SHARE), int(keep * (1 - HEAD_SHARE))
    result, shown = text, total
    for _ in range(12):
        head = _snap_head(text[:head_chars])
        tail = _snap_tail(text[len(text) - tail_chars :]) if tail_chars > 0 else ""
        middle = text[len(head) : len(text) - len(tail)]
        result = f"{head}{_marker(middle, counter)}{tail}"
        shown = counter.count(result)
        if shown <= target or (head_chars == 0 and tail_chars == 0):
            break
        # A token count is not linear in characters: shrink both ends by what is over, and try again.
        scale = min(target / shown, 0.95)
        head_chars, tail_chars = int(head_chars * scale), int(tail_chars * scale)
    return result, shown


def _snap_head(head: str) -> str:
    """End the head on a line break when one is near its end, so a step or turn is not cut mid-line."""
    cut = head.rfind("\n")
    return head[: cut + 1] if cut >= len(head) * 3 // 4 else head


def _snap_tail(tail: str) -> str:
    cut = tail.find("\n")
    return tail[cut + 1 :] if 0 <= cut <= len(tail) // 4 else tail


def _marker(middle: str, counter: TokenCounter) -> str:
    steps = len(_STEP_LINE.findall(middle))
    what = f"{steps} steps" if steps else f"{middle.count(chr(10)) + 1} lines"
    tokens = counter.count(middle)
    return f"\n[... {what} ({tokens} tokens) elided to fit the context window ...]\n"
