"""The router's aiohttp transport reads server-sent events as the openai SDK's own decoder does.

The same bytes go through `openai._streaming.SSEDecoder` and through the transport's reader; the
`data` of each event must agree, in order, for the shapes OpenAI-compatible servers send.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from openai._streaming import SSEDecoder

from bridge.adapters.openai_via_aiohttp import _sse_data

CASES = {
    "plain": b'data: {"a": 1}\n\ndata: {"a": 2}\n\ndata: [DONE]\n\n',
    "no space after the colon": b'data:{"a": 1}\n\n',
    "comments and keep-alives": b': ping\n\ndata: {"a": 1}\n\n: ping\n\n',
    "crlf line ends": b'data: {"a": 1}\r\n\r\ndata: [DONE]\r\n\r\n',
    "data over two lines": b'data: {"a":\ndata: 1}\n\n',
    "named events and ids": b'event: message\nid: 7\ndata: {"a": 1}\n\nevent: done\n\n',
    "retry field": b'retry: 1000\ndata: {"a": 1}\n\n',
    "no blank line at the end": b'data: {"a": 1}\n\ndata: {"a": 2}\n',
    "an empty event name": b'event:\n\ndata: {"a": 1}\n\n',
    "a retry alone": b'retry: 1000\n\ndata: {"a": 1}\n\n',
    "an id, then blank lines": b'id: 7\ndata: {"a": 1}\n\n\n',
    "a line of a megabyte": b'data: {"a": "' + b"x" * 1_000_000 + b'"}\n\n',
}


class _Body:
    """The body as aiohttp hands it over: pieces cut anywhere, here every 7 bytes."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    async def iter_any(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self.raw), 7):
            yield self.raw[start : start + 7]


async def _sdk(raw: bytes) -> list[str]:
    return [event.data async for event in SSEDecoder().aiter_bytes(_chunks(raw))]


async def _chunks(raw: bytes) -> AsyncIterator[bytes]:
    yield raw


async def _ours(raw: bytes) -> list[str]:
    return [data async for data in _sse_data(_Body(raw))]  # type: ignore[arg-type]


@pytest.mark.parametrize("case", list(CASES))
def test_events_read_as_the_sdk_reads_them(case: str) -> None:
    raw = CASES[case]
    assert asyncio.run(_ours(raw)) == asyncio.run(_sdk(raw))
