"""An answer held to the JSON the client asked for (`response_format`): as it is, else repaired once by
the synthesizer (shown what is wrong with it), else the best candidate that is that JSON; with none,
the run fails with `schema_unsatisfied`.

    hold = SchemaHold(calls, synthesizer="careful", select=decider.select)
    outcome = await hold.hold_to(schema, run, request, candidates, outcome)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bridge.errors import APIError, upstream_failure
from bridge.protocol import AssistantMessage, ChatCompletion, ChatMessage, ChatRequest
from server.engine.calls import ModelCalls, RunState
from server.engine.candidates import Candidate, best_candidate
from server.engine.result import Failure, Outcome
from server.engine.structured import AnswerSchema

__all__ = ["SchemaHold"]

# Makes a candidate the answer as it is (Decider.select), for `reason`.
Select = Callable[[RunState, Candidate, str], Awaitable[Outcome]]


class SchemaHold:
    def __init__(self, calls: ModelCalls, synthesizer: str, select: Select) -> None:
        self.calls = calls
        self.synthesizer = synthesizer
        self.select = select

    async def hold_to(
        self, schema: AnswerSchema, run: RunState, request: ChatRequest, candidates: list[Candidate], outcome: Outcome
    ) -> Outcome:
        """The answer in the JSON the client asked for: as it is, else repaired once by the synthesizer (shown
        what is wrong), else the best candidate that is; with none, the run fails (`schema_unsatisfied`)."""
        problem = schema.problem(outcome.message.content or "")
        if problem is None:
            return outcome
        await run.recorder.event("schema.unsatisfied", {"decision": outcome.decision.model_dump(), "problem": problem})
        repaired, problem = await self._repair(run, request, outcome.message.content or "", problem, schema)
        if repaired is not None:
            outcome.message = AssistantMessage(content=repaired.text)
            outcome.written_finish = repaired.choices[0].finish_reason  # not the broken answer's (often length)
            outcome.decision = outcome.decision.model_copy(update={"reason": f"{outcome.decision.reason}_repaired"})
            return outcome
        valid = [c for c in candidates if c.schema_error is None and not c.tool_calls]
        if not valid:
            error = upstream_failure(
                f"no answer is the JSON asked for ({schema.name}): the answer {problem}, and no candidate is"
            )
            error.code = "schema_unsatisfied"
            error.details = {"schema_errors": {c.candidate_id: c.schema_error for c in candidates}}
            raise error
        analysis = outcome.judge.analysis if outcome.judge else None
        fallback = await self.select(run, best_candidate(valid, analysis), "schema_fallback")
        fallback.judge, fallback.synthesizer_model_id = outcome.judge, outcome.synthesizer_model_id
        replaced = Failure("schema_unsatisfied", f"the answer {problem}; a candidate that is the JSON replaced it")
        fallback.failures = [*outcome.failures, replaced]
        return fallback

    async def _repair(
        self, run: RunState, request: ChatRequest, answer: str, problem: str, schema: AnswerSchema
    ) -> tuple[ChatCompletion | None, str]:
        """One more try by the synthesizer, shown its answer and what is wrong with it: (the repair, or None; why)."""
        synth_id = self.synthesizer
        messages = [
            *request.messages,
            ChatMessage(role="assistant", content=answer),
            ChatMessage(role="user", content=f"That answer {problem}. Reply with the corrected JSON only."),
        ]
        asked = request.model_copy(update={"messages": messages, "stream": False, "stream_options": None})
        try:
            repaired = await self.calls.call(run, "synthesizer", synth_id, asked)
        except APIError as error:
            return None, f"{problem}, and the repair call failed: {error.message}"
        again = schema.problem(repaired.text)
        if again is not None:
            return None, f"{problem}, and its repair {again}"
        await run.recorder.event("schema.repaired", {"synthesizer_model_id": synth_id})
        return repaired, problem
