"""The router's front doors: each speaks one API dialect over the one fusion path.

Chat Completions (`server.chat`), the OpenAI Responses API (`responses`) and the Anthropic
Messages API (`messages`) each translate their request into the engine's and the engine's result
and events back into their own wire format; `launch.FusionPath` starts, records, streams and
cancels the run for all three.
"""

from server.doors.launch import FusionPath
from server.doors.messages import messages_router
from server.doors.messages_translate import error_body as messages_error_body
from server.doors.responses import responses_router

__all__ = ["FusionPath", "messages_error_body", "messages_router", "responses_router"]
