"""`POST /v1/chat/completions` on the router: an OpenAI request in, a fused chat.completion out.

The handler resolves the mode, starts a recorded run (`server.doors.launch`, the path every front
door shares) and either waits for the engine's result or streams it: SSE keep-alive comments while
the panel and judge work, then the synthesizer's tokens as they arrive, then a last chunk that
carries the `fusionkit` metadata.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response

from bridge.errors import bad_request
from server.completions import respond
from server.doors.launch import FusionPath
from server.protocol import mode_of_model
from server.protocol.chat import FusionChatRequest, FusionOptions

__all__ = ["ChatHandler"]


class ChatHandler:
    def __init__(self, fusion: FusionPath) -> None:
        self.fusion = fusion

    def resolve(self, body: FusionChatRequest) -> FusionOptions:
        """The run's options: `fusion.mode`, else the model suffix; an endpoint id means single on it."""
        body.require_one_choice()
        if mode_of_model(body.model) is not None and (body.logprobs or body.top_logprobs):
            raise bad_request(
                "a fused answer has no logprobs; ask an endpoint id (a model of /v1/models) for them",
                param="logprobs",
                code="unsupported_parameter",
            )
        return self.fusion.options(body.model, body.fusion)

    async def __call__(self, request: Request, body: FusionChatRequest) -> Response:
        options = self.resolve(body)
        run = await self.fusion.start(
            request,
            door="chat.completions",
            model=body.model,
            chat=body.chat_request(),
            options=options,
            record=body.model_dump(exclude_none=True),
        )
        return await respond(request, run, model=body.model, stream=body.stream, include_usage=body.wants_usage_chunk)
