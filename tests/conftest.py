"""Fixtures shared by every suite: live servers and ready-made endpoint configs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.livesrv import LiveServer
from tests.pgserver import PostgresMissing, PostgresServer


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


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the whole session (tests/pgserver.py); skipped where none is installed."""
    try:
        server = PostgresServer.start()
    except PostgresMissing as exc:
        pytest.skip(f"{exc}: the PostgreSQL half of the store tests needs it (apt-get install postgresql)")
    with server:
        yield server


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> str:
    """A fresh, empty database on the session's PostgreSQL server."""
    return pg_server.new_database()
