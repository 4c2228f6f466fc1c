"""The router over a store it cannot write: a 2 MiB tmpfs filled while requests are in flight, a
read-only store, a store file deleted under it. New runs get 503 `store_unavailable` with
Retry-After (never a 500, a reset or a traceback), answers already computed are still returned,
`/health` says the store is degraded, the runs that lost writes end `failed`, and the router
recovers by itself once the store can be written again."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

from server.app import create_app
from server.clients import build_clients
from server.store import TERMINAL_STATES, RunStore
from server.store.pgstore import PgRunStore
from tests.held_calls import Hold
from tests.pgserver import PostgresServer
from tests.router_helpers import demo_endpoints, panel_config
from tests.store_faults import fill, read_only, tiny_volume

pytestmark = pytest.mark.slow

ASK = [{"role": "user", "content": "compare a and b"}]
# Bigger than anything a failed write could have left room for: it can only be recorded with space.
LARGE = [{"role": "user", "content": "compare these: " + "lorem ipsum " * 20_000}]


@pytest.fixture
def no_tracebacks(caplog: pytest.LogCaptureFixture) -> Iterator[Callable[[], None]]:
    """Collects every log record, uvicorn's too (it does not propagate to the root logger)."""
    uvicorn_log = logging.getLogger("uvicorn")
    caplog.set_level(logging.INFO)

    def check() -> None:
        if caplog.handler not in uvicorn_log.handlers:
            uvicorn_log.addHandler(caplog.handler)
        assert not [r for r in caplog.records if r.exc_info], caplog.text
        assert "Traceback" not in caplog.text

    yield check
    uvicorn_log.removeHandler(caplog.handler)


def store_health(url: str) -> dict[str, Any]:
    health: dict[str, Any] = httpx2.get(f"{url}/health").json()
    return health


def wait_store_ok(url: str) -> dict[str, Any]:
    """Until the router has found by itself that its store can be written again (its upkeep probes it)."""
    deadline = time.monotonic() + 30
    while (health := store_health(url))["store"]["status"] != "ok":
        assert time.monotonic() < deadline, health
        time.sleep(0.1)
    return health


def assert_store_unavailable(response: httpx2.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "2"
    error = response.json()["error"]
    assert (error["code"], error["type"]) == ("store_unavailable", "server_error")
    assert "/" not in error["message"]  # no file path for the client


def router(tmp_path: Path, live_server: Any, store: Path | str, hold: Hold | None = None) -> str:
    config = panel_config(tmp_path, demo_endpoints(), judge_model="fast", server={"run_lease_s": 300})
    config.server.run_store = str(store)
    clients = build_clients(config)
    if hold is not None:
        hold.endpoint(clients["careful"])
    url: str = live_server(create_app(config, clients=clients)).url
    return url


def test_a_full_store_answers_503_returns_computed_answers_and_recovers(
    tmp_path: Path, live_server: Any, no_tracebacks: Callable[[], None]
) -> None:
    with tiny_volume(tmp_path / "volume") as volume:
        hold = Hold()
        url = router(tmp_path, live_server, volume / "runs.sqlite3", hold)
        no_tracebacks()  # starts collecting uvicorn's records too
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        answers: dict[str, Any] = {}

        def chat() -> None:
            answers["chat"] = client.chat.completions.create(model="fusionkit/panel", messages=ASK)

        def stream() -> None:
            chunks = client.chat.completions.create(model="fusionkit/panel", messages=ASK, stream=True)
            answers["stream"] = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

        def native() -> None:
            answers["native"] = httpx2.post(f"{url}/v1/fusion/runs", json={"messages": ASK}, timeout=60)

        in_flight = [threading.Thread(target=work) for work in (chat, stream, native)]
        for thread in in_flight:
            thread.start()
        hold.wait_for_calls(3)  # three runs recorded, each waiting on one member
        filler = fill(volume)
        hold.release()
        for thread in in_flight:
            thread.join(timeout=60)

        # Computed while the store could not record them: the answers still reach their callers.
        chat_answer = answers["chat"]
        assert chat_answer.choices[0].message.content and chat_answer.choices[0].finish_reason == "stop"
        assert answers["stream"]
        assert answers["native"].status_code == 200, answers["native"].text
        held_runs = [chat_answer.fusionkit["run_id"], answers["native"].json()["run_id"]]

        # New runs are refused before any model is called; reading the past still works.
        for _ in range(5):
            assert_store_unavailable(
                httpx2.post(f"{url}/v1/chat/completions", json={"model": "fusionkit/panel", "messages": LARGE})
            )
            assert_store_unavailable(httpx2.post(f"{url}/v1/fusion/runs", json={"messages": LARGE}))
            assert_store_unavailable(
                httpx2.post(
                    f"{url}/v1/chat/completions", json={"model": "fusionkit/panel", "messages": ASK, "stream": True}
                )
            )
        with pytest.raises(openai.APIStatusError) as refused:
            client.chat.completions.create(model="fusionkit/single", messages=ASK)
        assert refused.value.status_code == 503 and refused.value.code == "store_unavailable"
        assert httpx2.get(f"{url}/v1/fusion/runs/{held_runs[0]}").status_code == 200
        health = store_health(url)
        assert (health["status"], health["store"]["status"]) == ("degraded", "degraded")
        assert health["store"]["error"] == "database or disk is full"

        filler.unlink()
        assert wait_store_ok(url)["status"] == "ok"
        again = client.chat.completions.create(model="fusionkit/panel", messages=ASK)
        assert again.choices[0].message.content

        # No run is left half way: those that lost writes ended failed, saying why, with gapless logs.
        runs = httpx2.get(f"{url}/v1/fusion/runs", params={"limit": 100}).json()["data"]
        assert {r["run_id"] for r in runs} >= set(held_runs)
        for run in runs:
            assert run["state"] in TERMINAL_STATES, run
            events = httpx2.get(f"{url}/v1/fusion/runs/{run['run_id']}/events", params={"limit": 1000}).json()["events"]
            assert [e["event_seq"] for e in events] == list(range(1, len(events) + 1))
        for run_id in held_runs:
            run = httpx2.get(f"{url}/v1/fusion/runs/{run_id}").json()
            assert (run["state"], run["terminal_reason"]) == ("failed", "store_unavailable"), run
        no_tracebacks()


def test_a_read_only_store_answers_503_and_recovers_once_writable(
    tmp_path: Path, live_server: Any, no_tracebacks: Callable[[], None]
) -> None:
    directory = tmp_path / "store"
    asyncio.run(RunStore(directory / "runs.sqlite3").close())  # a store an earlier router wrote
    with read_only(directory) as make_writable:
        url = router(tmp_path, live_server, directory / "runs.sqlite3")
        no_tracebacks()
        for _ in range(3):
            assert_store_unavailable(
                httpx2.post(f"{url}/v1/chat/completions", json={"model": "fusionkit/single", "messages": ASK})
            )
        health = store_health(url)
        assert health["store"]["status"] == "degraded" and health["status"] == "degraded"
        make_writable()
        wait_store_ok(url)
        answer = httpx2.post(f"{url}/v1/chat/completions", json={"model": "fusionkit/single", "messages": ASK})
        assert answer.status_code == 200, answer.text
    no_tracebacks()


def test_a_store_file_deleted_under_the_router_is_noticed(
    tmp_path: Path, live_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    store = tmp_path / "runs.sqlite3"
    url = router(tmp_path, live_server, store)
    before = httpx2.post(f"{url}/v1/fusion/runs", json={"messages": ASK, "mode": "single"}).json()
    os.remove(store)

    health = store_health(url)
    assert health["status"] == "degraded" and "deleted" in health["store"]["error"]
    assert any(r.levelname == "ERROR" and "deleted or replaced" in r.getMessage() for r in caplog.records)
    after = httpx2.post(f"{url}/v1/fusion/runs", json={"messages": ASK, "mode": "single"})
    assert after.status_code == 200 and after.json()["state"] == "completed"  # into a new file
    assert store.exists() and store_health(url)["store"]["status"] == "ok"
    assert httpx2.get(f"{url}/v1/fusion/runs/{before['run_id']}").status_code == 404


def test_a_database_that_stops_answering_answers_503_within_the_bound_and_recovers(
    tmp_path: Path,
    live_server: Any,
    pg_server: PostgresServer,
    pg_url: str,
    monkeypatch: pytest.MonkeyPatch,
    no_tracebacks: Callable[[], None],
) -> None:
    monkeypatch.setattr(PgRunStore, "batch_timeout_s", 1.0)
    url = router(tmp_path, live_server, pg_url)
    with pg_server.frozen():  # every PostgreSQL process stopped: connections open, nothing answered
        # Without the bound the request waited for the database forever; the client's timeout ends such a test.
        assert_store_unavailable(
            httpx2.post(f"{url}/v1/fusion/runs", json={"messages": ASK, "mode": "single"}, timeout=60)
        )
        assert store_health(url)["store"]["status"] == "degraded"
    wait_store_ok(url)
    answer = httpx2.post(f"{url}/v1/fusion/runs", json={"messages": ASK, "mode": "single"}, timeout=60)
    assert answer.status_code == 200 and answer.json()["state"] == "completed", answer.text
    no_tracebacks()
