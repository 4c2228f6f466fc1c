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
from server.protocol import FusionChatRequest, FusionOptions

__all__ = ["ChatHandler"]


class ChatHandler:
    def __init__(self, fusion: FusionPath) -> None:
        self.fusion = fusion

    def resolve(self, body: FusionChatRequest) -> FusionOptions:
        """The run's options: `fusion.mode`, else the model suffix; an endpoint id means single on it."""
        if body.n not in (None, 1):
            raise bad_request("'n' must be 1: a fused run returns one answer", param="n", code="unsupported_n")
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
        return await respond(
            request,
            model=body.model,
            stream=body.stream,
            include_usage=body.wants_usage_chunk,
            headers=run.headers,
            start=run.launch,
            keepalive_s=self.fusion.keepalive_s,
        )
