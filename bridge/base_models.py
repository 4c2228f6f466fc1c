"""The base classes every pydantic model here derives from, named for how they treat keys they do not declare,
and the field types several models share.

    class PanelConfig(Strict): ...        # a config, a contract record: an unknown key is a mistake, refused
    class ChatRequest(Open): ...          # a wire request: fields the API has and we do not model are kept

Kept apart from `bridge.protocol` so that loading a config (`fusionkit up`'s supervisor) does not build
every wire model.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Open", "Probability", "Strict"]


class Strict(BaseModel):
    """Unknown keys are refused: configs, the `fusion` options, the seed's contract records."""

    model_config = ConfigDict(extra="forbid")


class Open(BaseModel):
    """Unknown keys are kept, never refused: the request side of the OpenAI, Responses and Messages APIs.

    Clients send fields faster than any proxy learns them (`prompt_cache_key`, `context_management`, ...);
    refusing one would break the client for nothing, and a bridge passes them on upstream.
    """

    model_config = ConfigDict(extra="allow", populate_by_name=True)


# top_p, a mock's fail rate: 0 and 1 included, as OpenAI's top_p is.
Probability = Annotated[float, Field(ge=0, le=1)]
