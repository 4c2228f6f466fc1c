"""Fixtures shared by every suite: live servers and ready-made endpoint configs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.livesrv import LiveServer


@pytest.fixture
def live_server() -> Iterator[Callable[[Any], LiveServer]]:
    """Start any number of ASGI apps as real servers; all are stopped at the end of the test."""
    started: list[LiveServer] = []

    def start(app: Any) -> LiveServer:
        server = LiveServer(app).__enter__()
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.__exit__(None, None, None)
