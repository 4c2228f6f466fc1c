"""Two routers on one PostgreSQL run store, in one process: whichever replica a request reaches, it acts on the
run wherever the run executes. A cancel and tool results sent to B reach the run executing on A (LISTEN/NOTIFY),
mismatched tool results are refused by A with the precise 409 B answers, a long poll of B's events hears A's
events as they commit, and a replay on B of a run A executes waits for A's answer.
(The same with real router processes, SIGKILL and 200 runs: test_replicas_processes.py.)"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx2
from fastapi import FastAPI

from server.app import create_app
from server.clients import build_clients
from tests.held_calls import Hold
from tests.router_helpers import demo_endpoints, panel_config
from tests.test_runs_api import native_error
from tests.test_tool_execution import final_state, pending_calls, start_run, submission

ASK = {"messages": [{"role": "user", "content": "compare a and b"}], "mode": "panel"}


class Replica:
    def __init__(self, app: FastAPI, live_server: Any) -> None:
        self.app = app
        self.url: str = live_server(app).url

    def until_following(self, run_id: str) -> None:
        """Until this replica waits on the store for `run_id`'s next event (a long poll, a replay)."""
        deadline = time.monotonic() + 10
        while run_id not in self.app.state.store._watchers:
            assert time.monotonic() < deadline, "the replica never started waiting on the run"
            time.sleep(0.01)  # looking at another thread's server: there is no event to wait on


def two_replicas(tmp_path: Path, live_server: Any, pg_url: str, hold: Hold | None = None) -> tuple[Replica, Replica]:
    """Router A (its `careful` member held by `hold`, if given) and router B, on one PostgreSQL database."""
    config = panel_config(tmp_path, demo_endpoints(), judge_model="fast")
    config.server.run_store = pg_url
    clients = build_clients(config)
    if hold is not None:
        hold.endpoint(clients["careful"])
    return Replica(create_app(config, clients=clients), live_server), Replica(create_app(config), live_server)


def test_a_cancel_sent_to_b_stops_the_run_on_a_and_bs_long_poll_hears_it(
    tmp_path: Path, live_server: Any, pg_url: str
) -> None:
    hold = Hold()
    replica_a, replica_b = two_replicas(tmp_path, live_server, pg_url, hold)
    a, b = replica_a.url, replica_b.url
    try:
        created = httpx2.post(f"{a}/v1/fusion/runs", json=ASK, headers={"Prefer": "respond-async"}).json()
        run_id = created["run_id"]
        hold.wait_for_calls(1)
        seen = httpx2.get(f"{b}/v1/fusion/runs/{run_id}").json()
        assert seen["state"] == "generating"

        polled: dict[str, Any] = {}

        def long_poll() -> None:
            after = seen["event_cursor"]
            polled["page"] = httpx2.get(f"{b}/v1/fusion/runs/{run_id}/events?after={after}&wait=30", timeout=60).json()

        poller = threading.Thread(target=long_poll)
        poller.start()
        replica_b.until_following(run_id)
        cancelled = httpx2.post(f"{b}/v1/fusion/runs/{run_id}/cancel", timeout=30)
        poller.join(timeout=60)
        assert cancelled.status_code == 200, cancelled.text
        assert (cancelled.json()["state"], cancelled.json()["terminal_reason"]) == ("cancelled", "cancel_requested")
        on_a = httpx2.get(f"{a}/v1/fusion/runs/{run_id}").json()
        assert on_a["state"] == "cancelled"  # A stopped it: the run's end is A's record
        events = polled["page"]["events"]
        assert events and events[0]["event_seq"] == seen["event_cursor"] + 1  # woken by A's commit

        again = httpx2.post(f"{b}/v1/fusion/runs/{run_id}/cancel")  # a finished run: its summary, no error
        assert again.status_code == 200 and again.json()["state"] == "cancelled"
    finally:
        hold.release()


def test_tool_results_sent_to_b_reach_the_run_paused_on_a(tmp_path: Path, live_server: Any, pg_url: str) -> None:
    a, b = (replica.url for replica in two_replicas(tmp_path, live_server, pg_url))
    run_id = start_run(a, tool_execution={"dedupe_read_only": False})  # each member's call on its own
    calls = pending_calls(b, run_id, 3)  # B reads A's pause from the store
    url = f"{b}/v1/fusion/runs/{run_id}/tool-results"
    first, *rest = calls
    # A checks the submission and refuses it precisely; B answers what A said.
    wrong_call = httpx2.post(url, json=submission(first, tool_call_id="call_nope"))
    refused = native_error(wrong_call, 409, "tool_call_mismatch")
    assert refused["terminal_reason"] == "tool_result_for_wrong_tool_call"
    native_error(httpx2.post(url, json=submission(first, tool_name="rm_rf")), 409, "tool_name_mismatch")

    accepted = httpx2.post(url, json=submission(first))
    assert accepted.status_code == 200, accepted.text
    assert len(accepted.json()["fusionkit"]["pending_tool_calls"]) == 2  # B's answer shows what A did
    for pause in rest:
        assert httpx2.post(url, json=submission(pause)).status_code == 200
    run = final_state(b, run_id)
    assert run["state"] == "completed" and "4 words" in run["final_output"]
    native_error(httpx2.post(url, json=submission(first)), 409, "run_not_waiting_for_tool")


def test_a_replay_on_b_waits_for_the_answer_of_the_run_on_a(tmp_path: Path, live_server: Any, pg_url: str) -> None:
    hold = Hold()
    replica_a, replica_b = two_replicas(tmp_path, live_server, pg_url, hold)
    a, b = replica_a.url, replica_b.url
    headers = {"Idempotency-Key": "once"}
    try:
        started = httpx2.post(f"{a}/v1/fusion/runs", json=ASK, headers={**headers, "Prefer": "respond-async"})
        run_id = started.json()["run_id"]
        hold.wait_for_calls(1)
        replayed: dict[str, httpx2.Response] = {}
        waiter = threading.Thread(
            target=lambda: replayed.update(r=httpx2.post(f"{b}/v1/fusion/runs", json=ASK, headers=headers, timeout=60))
        )
        waiter.start()
        replica_b.until_following(run_id)  # B answers only once A's run has: it follows it in the store
        hold.release()
        waiter.join(timeout=60)
        answer = replayed["r"].json()
        assert (answer["run_id"], answer["idempotency_outcome"]) == (run_id, "replayed")
        assert answer["state"] == "completed" and answer["inspection"]["final_output"]
    finally:
        hold.release()
