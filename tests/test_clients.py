"""EndpointClient: the run's deadline bounds retries, while cutting the run short is the engine's wall clock's job."""

from __future__ import annotations

import asyncio
import time

import pytest

from bridge.adapters import CallContext, make_adapter
from bridge.endpoint import EndpointConfig
from bridge.protocol import ChatRequest
from server.clients import EndpointClient
from tests.router_helpers import mock_endpoint

HELLO = ChatRequest.model_validate({"model": "slow", "messages": [{"role": "user", "content": "hi"}]})


async def test_a_call_is_not_cut_short_by_the_runs_deadline_only_by_the_wall_clock() -> None:
    # Two timers for one limit made the outcome a race: the call's copy fired first, the judge "failed",
    # and the run went on without it instead of timing out (a flaky 504 test on a busy machine).
    endpoint = EndpointConfig.model_validate(mock_endpoint("slow", latency_ms=5000))
    client = EndpointClient(endpoint, make_adapter(endpoint))
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):  # the engine's budget.wall_clock_s
            await client.complete(HELLO, CallContext(), deadline=time.monotonic() + 0.05)
