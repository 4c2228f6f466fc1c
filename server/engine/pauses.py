"""External tool execution: a member that calls a tool pauses the run until the client sends the result.

    pauses = ToolPauses(recorder, policy, tools, budget)
    results = await pauses.request(candidate_id, endpoint_id, tool_calls)   # the run is `requires_action`
    ...
    await pauses.submit(candidate_id, [ToolResult(tool_call_id=..., output=...)])  # from POST .../tool-results

The run is in `requires_action` while any call is pending and returns to `generating` when none
is. Budgets (`max_tool_calls`, `max_tool_rounds`) and `allowed_side_effects` are checked before
a pause; with `dedupe_read_only`, an identical read-only call by two members waits on one result.

The run has *settled* in `requires_action` once every member is either finished or waiting for a
result (`settled`, and `on_settled` with the pending calls): that is when a caller waiting for
the run gets the whole list of calls to execute, not the first member's alone.

A member that ends (answered, dropped, or cut off by the run's end) withdraws the calls only it
waited for, so a result sent for one later is refused (409), never applied to a call nobody awaits.
Once the panel is over (`close`), no pause is announced any more.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from bridge.errors import conflict
from bridge.protocol import Tool, ToolCall
from server.config import BudgetConfig
from server.engine.recorder import Recorder
from server.protocol.chat import ToolExecution

__all__ = ["ToolPauses", "ToolRefused", "ToolResult"]


class ToolResult(BaseModel):
    tool_call_id: str
    output: str
    candidate_id: str | None = None
    name: str | None = None


class ToolRefused(Exception):
    """A call the policy or a budget does not allow; the member is dropped with this reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def side_effects_of(tool: Tool | None) -> str:
    """A tool declares its side effects as `side_effects` (or `x-side-effects`) on its function.

    One that declares none is `read_only`, as fusionkit 0.1 takes it: a tool that writes must say so.
    """
    if tool is None:
        return "unknown"
    extra = tool.function.model_extra or {}
    value = extra.get("side_effects", extra.get("x-side-effects", "read_only"))
    return str(value)


@dataclass
class _Pending:
    candidate_id: str  # whose call it is (of a deduplicated call, the member that made it first)
    name: str
    arguments: str
    dedupe_key: str | None
    waiters: set[str] = field(default_factory=set)  # the members waiting for its result
    future: asyncio.Future[str] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class ToolPauses:
    def __init__(self, recorder: Recorder, policy: ToolExecution, tools: list[Tool], budget: BudgetConfig) -> None:
        self.recorder = recorder
        self.policy = policy
        self.tools = {t.function.name: t for t in tools}
        self.budget = budget
        self.calls_made = 0
        self.rounds: dict[str, int] = {}
        self.pending: dict[str, _Pending] = {}
        self._by_key: dict[str, _Pending] = {}
        self._lock = asyncio.Lock()
        self._ids: set[str] = set()  # every id a call of this run was pending under
        self.working = 0  # members neither finished nor waiting for a tool result
        self.settled = asyncio.Event()
        self.on_settled: Callable[[list[dict[str, Any]]], Awaitable[None]] | None = None
        self.closed = False

    def member_started(self) -> None:
        self.working += 1

    async def member_finished(self, candidate_id: str) -> None:
        """A member has ended, whatever the way: its calls no other member waits for are withdrawn."""
        self.working -= 1
        async with self._lock:
            for call_id, pending in list(self.pending.items()):
                pending.waiters.discard(candidate_id)
                if not pending.waiters:
                    del self.pending[call_id]
                    if pending.dedupe_key is not None:
                        self._by_key.pop(pending.dedupe_key, None)
                    pending.future.cancel()
        await self._maybe_settled()

    def called_tools(self, candidate_id: str) -> bool:
        """Whether the client has been asked to run tool calls of this member (it paused at least once)."""
        return self.rounds.get(candidate_id, 0) > 0

    def close(self) -> None:
        """The panel is over (done, or cut off with the run): no pause is announced from now on, so members
        ended one by one never look like a run settled on the calls of those not ended yet."""
        self.closed = True

    async def _maybe_settled(self) -> None:
        if self.closed:
            return
        if self.working == 0 and self.pending and not self.settled.is_set():
            self.settled.set()
            if self.on_settled is not None:
                await self.on_settled(self.plan())

    def plan(self) -> list[dict[str, Any]]:
        """The calls waiting for a result: what a client needs to run them and submit their outputs."""
        return [
            {"tool_call_id": cid, "candidate_id": p.candidate_id, "name": p.name, "arguments": p.arguments}
            for cid, p in self.pending.items()
        ]

    def _run_unique(self, candidate_id: str, call_id: str) -> str:
        """The id a call is pending under: the member's own, unless another call of this run used it already
        (servers that number calls per answer, `call_0`, give two members the same ids)."""
        unique, n = call_id, 1
        while unique in self._ids:
            unique, n = f"{candidate_id}.{call_id}" + (f".{n}" if n > 1 else ""), n + 1
        self._ids.add(unique)
        return unique

    def _check(self, candidate_id: str, calls: list[ToolCall]) -> None:
        rounds = self.rounds.get(candidate_id, 0) + 1
        if self.budget.max_tool_rounds is not None and rounds > self.budget.max_tool_rounds:
            raise ToolRefused(
                "max_tool_rounds_exceeded",
                f"tool round {rounds} exceeds budget.max_tool_rounds={self.budget.max_tool_rounds}",
            )
        if self.budget.max_tool_calls is not None and self.calls_made + len(calls) > self.budget.max_tool_calls:
            raise ToolRefused(
                "max_tool_calls_exceeded",
                f"{self.calls_made + len(calls)} tool calls exceed budget.max_tool_calls={self.budget.max_tool_calls}",
            )
        allowed = self.policy.allowed_side_effects
        for call in calls:
            effect = side_effects_of(self.tools.get(call.function.name))
            if effect not in allowed:
                raise ToolRefused(
                    "side_effect_not_allowed",
                    f"tool '{call.function.name}' has side effects '{effect}', not in allowed_side_effects {allowed}",
                )
            if effect != "read_only" and not (self.policy.policy_id and self.policy.environment):
                # As fusionkit 0.1: a tool that changes something runs only under a named policy and environment.
                raise ToolRefused(
                    "side_effect_requires_policy_environment",
                    f"tool '{call.function.name}' has side effects '{effect}': tool_execution needs policy_id "
                    "and environment for it",
                )

    async def request(self, candidate_id: str, endpoint_id: str, calls: list[ToolCall]) -> list[str]:
        """Pause for `calls`; returns their outputs in order once the client has sent them all."""
        async with self._lock:
            self._check(candidate_id, calls)
            was_waiting = bool(self.pending)
            self.rounds[candidate_id] = self.rounds.get(candidate_id, 0) + 1
            self.calls_made += len(calls)
            waits: list[asyncio.Future[str]] = []
            plan = []
            for call in calls:
                call_id = self._run_unique(candidate_id, call.id)
                args_hash = hashlib.sha256(_canonical(call.function.arguments).encode()).hexdigest()
                effect = side_effects_of(self.tools.get(call.function.name))
                key = (
                    f"{call.function.name}:{args_hash}"
                    if self.policy.dedupe_read_only and effect == "read_only"
                    else None
                )
                shared = self._by_key.get(key) if key else None
                if shared is not None:
                    shared.waiters.add(candidate_id)
                    waits.append(shared.future)
                    plan.append(
                        {
                            "tool_call_id": call_id,
                            "name": call.function.name,
                            "arguments_sha256": args_hash,
                            "side_effects": effect,
                            "shared_with": shared.candidate_id,
                            "deduplicated": True,
                        }
                    )
                    continue
                pending = _Pending(
                    candidate_id=candidate_id,
                    name=call.function.name,
                    arguments=call.function.arguments,
                    dedupe_key=key,
                    waiters={candidate_id},
                )
                self.pending[call_id] = pending
                if key:
                    self._by_key[key] = pending
                waits.append(pending.future)
                plan.append(
                    {
                        "tool_call_id": call_id,
                        "name": call.function.name,
                        "arguments": call.function.arguments,
                        "arguments_sha256": args_hash,
                        "side_effects": effect,
                    }
                )
            await self.recorder.event(
                "tool.plan", {"candidate_id": candidate_id, "endpoint_id": endpoint_id, "calls": plan}
            )
            if self.pending and not was_waiting:
                await self.recorder.transition("requires_action", {"pending": self.plan()})
            self.working -= 1
        try:
            await self._maybe_settled()
            # Shielded: a member cut off stops waiting, but a call another member shares stays pending.
            return list(await asyncio.gather(*(asyncio.shield(w) for w in waits)))
        finally:
            self.working += 1
            self.settled.clear()

    async def submit(self, results: list[ToolResult]) -> dict[str, Any]:
        """Resolve pending calls; every mismatch is a 409 with its own code, and nothing is applied then."""
        async with self._lock:
            if not self.pending:
                raise conflict("the run is not waiting for tool results", code="run_not_waiting")
            for result in results:
                pending = self.pending.get(result.tool_call_id)
                if pending is None:
                    raise conflict(
                        f"tool_call_id '{result.tool_call_id[:80]}' is not pending in this run",
                        code="unknown_tool_call_id",
                    )
                if result.candidate_id is not None and result.candidate_id != pending.candidate_id:
                    raise conflict(
                        f"tool_call_id '{result.tool_call_id}' belongs to candidate "
                        f"'{pending.candidate_id}', not '{result.candidate_id[:80]}'",
                        code="candidate_mismatch",
                    )
                if result.name is not None and result.name != pending.name:
                    raise conflict(
                        f"tool_call_id '{result.tool_call_id}' is a call of '{pending.name}', not '{result.name[:80]}'",
                        code="tool_name_mismatch",
                    )
            for result in results:
                # A deduplicated call keeps its resolved future: a member asking later gets the result at once.
                pending = self.pending.pop(result.tool_call_id)
                pending.future.set_result(result.output)
                await self.recorder.event(
                    "tool.result",
                    {
                        "tool_call_id": result.tool_call_id,
                        "candidate_id": pending.candidate_id,
                        "name": pending.name,
                        "output_chars": len(result.output),
                        "output_sha256": hashlib.sha256(result.output.encode()).hexdigest(),
                    },
                )
            if not self.pending:
                await self.recorder.transition("generating", {"reason": "tool results received"})
            return {"accepted": [r.tool_call_id for r in results], "pending": self.plan()}


def _canonical(arguments: str) -> str:
    try:
        return json.dumps(json.loads(arguments or "{}"), sort_keys=True, separators=(",", ":"))
    except json.JSONDecodeError:
        return arguments
