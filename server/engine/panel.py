"""The panel: every planned member answers in parallel, and each answer becomes a recorded candidate
or a dropped member with its reason.

    panel = Panel(calls, member_timeout_s=30)
    candidates = await panel.ask(run, request, plan.members)    # run.failed holds who was dropped and why

A member that errors, times out, says nothing, proposes a tool the request does not offer, or is
refused a tool by the policy is dropped; the run decides whether enough remain. With external
tool execution (`run.pauses`), a member's tool calls pause the run until the client sends the
results, and the member continues with them in its own conversation.

With a quorum (`panel.quorum: k`), one slow member no longer sets every answer's latency: once k
members have answered, the others get `panel.grace_ms` more and are then dropped as `late`; when
the first k agree, the others are not waited for at all. A member that paused for tool results is
never late: the client is asked to run its calls, and the run waits for them and for its answer.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bridge.errors import APIError
from bridge.protocol import ChatCompletion, ChatMessage, ChatRequest, Usage
from server.engine.calls import ModelCalls, RunState, ms_since
from server.engine.candidates import Candidate, MemberPlan, unanimous
from server.engine.pauses import ToolRefused
from server.engine.recorder import Recorder
from server.protocol.chat import FailedMember

__all__ = ["Panel", "record_candidate"]


async def record_candidate(recorder: Recorder, candidate: Candidate) -> None:
    """A candidate's text as an artifact and its `candidate.recorded` event, so the run shows it."""
    candidate.artifact_sha256 = await recorder.artifact(candidate.text or candidate.model_dump_json())
    await recorder.event(
        "candidate.recorded",
        candidate.model_dump(
            include={
                "candidate_id",
                "endpoint_id",
                "model",
                "finish_reason",
                "latency_ms",
                "artifact_sha256",
                "tool_calls",
            }
        ),
    )


class Panel:
    def __init__(
        self,
        calls: ModelCalls,
        *,
        member_timeout_s: float | None,
        quorum: int | None = None,
        grace_ms: float = 0,
    ) -> None:
        self.calls = calls
        self.member_timeout_s = member_timeout_s
        self.quorum = quorum
        self.grace_s = grace_ms / 1000

    async def ask(self, run: RunState, request: ChatRequest, members: list[MemberPlan]) -> list[Candidate]:
        """The members' answers, in the members' order."""
        started = time.perf_counter()
        if run.pauses is not None:
            for _ in members:
                run.pauses.member_started()  # all counted before one can settle the run on its own calls
        tasks = {asyncio.ensure_future(self._member(run, request, plan)): plan for plan in members}
        try:
            if self.quorum is None or self.quorum >= len(members):
                await asyncio.wait(tasks)
            else:
                await self._until_quorum(run, tasks, self.quorum)
        finally:
            if run.pauses is not None:
                run.pauses.close()
            for task in tasks:
                task.cancel()  # a no-op for the finished; cut off here when the run is (wall clock, cancel)
            # Their calls end in the record before the run does.
            await asyncio.gather(*tasks, return_exceptions=True)
        run.latency_ms["panel"] = ms_since(started)
        answers = [task.result() for task in tasks if not task.cancelled()]
        return [c for c in answers if c is not None]

    async def _until_quorum(
        self, run: RunState, tasks: dict[asyncio.Task[Candidate | None], MemberPlan], quorum: int
    ) -> None:
        """Wait for `quorum` answers, then up to the grace period for the rest; drop who is still out as late.

        A member that paused for tool results is not late: the client has been (or is about to be) asked
        to run its calls, so the run waits for the results and for the answer they lead to.
        """
        waiting = set(tasks)
        answered: list[Candidate] = []
        while waiting and len(answered) < quorum:
            done, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            answered += [c for c in (task.result() for task in done) if c is not None]
        if not waiting:
            return
        if len(answered) >= quorum and not unanimous(answered[:quorum]) and self.grace_s > 0:
            _, waiting = await asyncio.wait(waiting, timeout=self.grace_s)
        pauses = run.pauses
        paused = {task for task in waiting if pauses is not None and pauses.called_tools(tasks[task].candidate_id)}
        late = waiting - paused
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        why = (
            "agreed"
            if len(answered) >= quorum and unanimous(answered[:quorum])
            else f"answered, {self.grace_s * 1000:g} ms grace"
        )
        for task in late:
            plan = tasks[task]
            await self._drop(run, plan, f"late: {quorum} members had {why}", None, late=True)
        if paused:
            await asyncio.wait(paused)

    def candidate(self, plan: MemberPlan, completion: ChatCompletion, latency_ms: float) -> Candidate:
        message = completion.message
        return Candidate(
            candidate_id=plan.candidate_id,
            endpoint_id=plan.endpoint_id,
            model=self.calls.clients[plan.endpoint_id].endpoint.model,
            text=message.content or "",
            tool_calls=message.tool_calls or [],
            finish_reason=completion.choices[0].finish_reason,
            usage=completion.usage or Usage(),
            latency_ms=latency_ms,
        )

    async def _member(self, run: RunState, request: ChatRequest, plan: MemberPlan) -> Candidate | None:
        try:
            return await self._answer(run, request, plan)
        finally:
            if run.pauses is not None:
                await run.pauses.member_finished(plan.candidate_id)

    async def _answer(self, run: RunState, request: ChatRequest, plan: MemberPlan) -> Candidate | None:
        update: dict[str, Any] = {"stream": False, "stream_options": None}
        if plan.temperature is not None:
            update["temperature"] = plan.temperature
        if plan.seed is not None:
            update["seed"] = plan.seed
        started = time.perf_counter()
        # Its own message list: tool rounds extend this member's conversation only.
        member_request = request.model_copy(update={**update, "messages": list(request.messages)})
        try:
            completion = await self._ask_member(run, plan, member_request)
            while run.pauses is not None and completion.message.tool_calls:
                completion = await self._resume_after_tools(run, plan, member_request, completion)
        except APIError as error:
            await self._drop(run, plan, error.message, error.status)
            return None
        except ToolRefused as refused:
            await self._drop(run, plan, f"{refused.code}: {refused}", None)
            return None
        candidate = self.candidate(plan, completion, ms_since(started))
        if candidate.is_empty:
            await self._drop(run, plan, "returned an empty answer", None)
            return None
        offered = {t.function.name for t in request.tools or []}
        foreign = [c.function.name for c in candidate.tool_calls if c.function.name not in offered]
        if foreign:
            await self._drop(run, plan, f"proposed tool '{foreign[0]}', which the request does not offer", None)
            return None
        await record_candidate(run.recorder, candidate)
        await run.reason(f"{plan.candidate_id} ({plan.endpoint_id}) answered in {candidate.latency_ms / 1000:.1f} s.\n")
        return candidate

    async def _resume_after_tools(
        self, run: RunState, plan: MemberPlan, member_request: ChatRequest, completion: ChatCompletion
    ) -> ChatCompletion:
        """Pause for the member's tool calls, then let it continue with the results in its conversation."""
        assert run.pauses is not None
        calls = completion.message.tool_calls or []
        outputs = await run.pauses.request(plan.candidate_id, plan.endpoint_id, calls)
        turn = [
            ChatMessage(role="assistant", content=completion.message.content, tool_calls=calls),
            *(ChatMessage(role="tool", tool_call_id=c.id, content=out) for c, out in zip(calls, outputs, strict=True)),
        ]
        member_request.messages.extend(turn)
        return await self._ask_member(run, plan, member_request)

    async def _ask_member(self, run: RunState, plan: MemberPlan, request: ChatRequest) -> ChatCompletion:
        """One call of a panel member, first or after tool results, under `panel.member_timeout_s`."""
        return await self.calls.call(
            run, "panel", plan.endpoint_id, request, candidate_id=plan.candidate_id, timeout_s=self.member_timeout_s
        )

    @staticmethod
    async def _drop(run: RunState, plan: MemberPlan, reason: str, status: int | None, *, late: bool = False) -> None:
        run.failed.append(
            FailedMember(endpoint_id=plan.endpoint_id, candidate_id=plan.candidate_id, reason=reason, status=status)
        )
        dropped = {"candidate_id": plan.candidate_id, "endpoint_id": plan.endpoint_id, "reason": reason}
        await run.recorder.event("candidate.dropped", {**dropped, "late": True} if late else dropped)
        await run.reason(f"{plan.candidate_id} ({plan.endpoint_id}) was dropped: {reason}\n")
