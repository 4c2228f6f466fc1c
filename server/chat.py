"""`POST /v1/chat/completions` on the router: an OpenAI request in, a fused chat.completion out.

The handler resolves the mode, starts a recorded run and either waits for the engine's result
or streams it: SSE keep-alive comments while the panel and judge work, then the synthesizer's
tokens as they arrive, then a last chunk that carries the `fusionkit` metadata.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response

from bridge.errors import bad_request, not_found
from bridge.http import log_context
from server.completions import respond
from server.engine import FusionEngine
from server.protocol import FUSION_MODELS, FusionChatRequest, FusionOptions, mode_of_model
from server.runs import RunService

__all__ = ["ChatHandler"]

KEEPALIVE_S = 2.0


class ChatHandler:
    def __init__(self, engine: FusionEngine, runs: RunService, *, keepalive_s: float = KEEPALIVE_S) -> None:
        self.engine = engine
        self.runs = runs
        self.keepalive_s = keepalive_s

    def resolve(self, body: FusionChatRequest) -> FusionOptions:
        """The run's options: `fusion.mode`, else the model suffix (SPEC §5); an endpoint id means single on it."""
        body.require_one_choice()
        options = body.fusion or FusionOptions()
        mode = mode_of_model(body.model)
        if mode is not None:
            if body.logprobs or body.top_logprobs:
                raise bad_request(
                    "a fused answer has no logprobs; ask an endpoint id (a model of /v1/models) for them",
                    param="logprobs",
                    code="unsupported_parameter",
                )
            return options if options.mode is not None else options.model_copy(update={"mode": mode})
        if body.model in self.engine.clients:
            return options.model_copy(update={"mode": "single", "panel_models": [body.model]})
        allowed = ", ".join([*FUSION_MODELS, *self.engine.clients])
        raise not_found(f"model '{body.model}' does not exist here; allowed: {allowed}")

    async def __call__(self, request: Request, body: FusionChatRequest) -> Response:
        options = self.resolve(body)
        chat = body.chat_request()
        self.engine.check(chat, options)
        recorder = await self.runs.start(
            mode=options.mode or self.engine.config.default_mode,
            request=body.model_dump(exclude_none=True),
            trace_id=request.headers.get("x-fusion-trace-id"),
        )
        log_context(request).update({"run_id": recorder.run_id, "model": body.model})
        headers = {"x-fusion-run-id": recorder.run_id, "x-fusion-trace-id": recorder.trace_id}
        return await respond(
            request,
            model=body.model,
            stream=body.stream,
            include_usage=body.wants_usage_chunk,
            run_id=recorder.run_id,
            headers=headers,
            start=lambda emit: self.runs.launch(self.engine, recorder, chat, options, emit),
            keepalive_s=self.keepalive_s,
        )
