"""The router's wire formats: one module per API it speaks, as pydantic models.

    server.protocol.chat          Chat Completions' additions: the `fusion` options, the `fusionkit` metadata
    server.protocol.native        /v1/fusion/runs (fusionkit-server 0.1.1's contract), rejudge
    server.protocol.trajectories  /v1/fusion/trajectories:fuse and trajectory:step
    server.protocol.responses     the OpenAI Responses API (POST /v1/responses)
    server.protocol.messages      the Anthropic Messages API (POST /v1/messages)

A package, not one module, because these are five APIs that share almost no models, each mirrored field
by field (about 1,400 lines together); vLLM keeps one protocol module per API the same way
(`entrypoints/openai/chat_completion/protocol.py`, `entrypoints/anthropic/protocol.py`). What they all
share is here: the fusion modes (`Mode` itself is the config's: `default_mode` is one) and the
`fusionkit/*` model names. The OpenAI Chat Completions format itself is `bridge.protocol`'s, shared
with the bridge.
"""

from __future__ import annotations

from typing import Any, get_args

from server.config import Mode

__all__ = ["FUSION_MODELS", "MODES", "MODE_ALIASES", "Mode", "canonical_mode", "mode_of_model", "type_tag"]

MODES: tuple[str, ...] = get_args(Mode)
FUSION_MODELS = tuple(f"fusionkit/{mode}" for mode in ("router", "single", "self", "panel"))
# fusionkit 0.10's names for the router mode, accepted wherever a mode or a fusionkit/* model is.
MODE_ALIASES = {"heuristic": "router"}


def canonical_mode(value: Any) -> Any:
    """A mode as given, with its old alias replaced (a `mode="before"` validator of every `mode` field)."""
    return MODE_ALIASES.get(value, value) if isinstance(value, str) else value


def mode_of_model(model: str) -> str | None:
    """The mode a `fusionkit/*` model name asks for (`fusionkit/router` included); None for anything else."""
    if not model.startswith("fusionkit/"):
        return None
    mode = canonical_mode(model.removeprefix("fusionkit/"))
    return mode if f"fusionkit/{mode}" in FUSION_MODELS else None


def type_tag(value: Any, default: str | None = None) -> str | None:
    """The `type` of a raw item, block or tool, for choosing its model; anything but a string is None."""
    kind = value.get("type", default) if isinstance(value, dict) else getattr(value, "type", default)
    return kind if isinstance(kind, str) else None
