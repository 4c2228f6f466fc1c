"""Redraw the viewer's screenshots in docs/ (linked from the README): `python -m tests.ui_screenshots`.

A router on the demo's three mock voices (at their demo latencies) plus one member that always fails,
a few runs through different doors, then the list (with one run still going) and one run's page, taken
in Debian's headless Chromium. Look at the pictures before committing them.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import httpx2

from server.app import create_app
from server.clients import build_clients
from tests.browser import chromium
from tests.held_calls import Hold
from tests.livesrv import LiveServer
from tests.router_helpers import demo_endpoints, mock_endpoint, panel_config

DOCS = Path(__file__).resolve().parent.parent / "docs"
QUESTION = [{"role": "user", "content": "Compare write-through and write-back caching."}]


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="fusionkit-shots-"))
    endpoints = [
        *demo_endpoints(fast={"latency_ms": 120}, careful={"latency_ms": 250}, structured={"latency_ms": 180}),
        mock_endpoint("flaky", "mock-flaky", fail_rate=1.0),
    ]
    for endpoint, price in zip(endpoints, ((0.15, 0.6), (3.0, 15.0), (0.5, 1.5)), strict=False):
        endpoint["pricing"] = {"input_per_1m_tokens": price[0], "output_per_1m_tokens": price[1]}
    config = panel_config(workdir, endpoints, judge_model="careful", synthesizer_model="careful")
    clients = build_clients(config)
    hold = Hold()
    with (
        LiveServer(create_app(config, clients=clients)) as server,
        httpx2.Client(base_url=server.url, timeout=60) as http,
    ):
        http.post("/v1/chat/completions", json={"model": "fast", "messages": QUESTION})
        http.post("/v1/chat/completions", json={"model": "flaky", "messages": QUESTION})
        body = {"model": "fusionkit/panel", "max_tokens": 512, "messages": QUESTION}
        http.post("/v1/messages", json=body, headers={"anthropic-version": "2023-06-01"})
        shown = http.post("/v1/chat/completions", json={"model": "fusionkit/panel", "messages": QUESTION})
        run_id = shown.headers["x-fusion-run-id"]
        hold.endpoint(clients["structured"])
        http.post("/v1/fusion/runs", json={"messages": QUESTION, "mode": "panel"}, headers={"Prefer": "respond-async"})
        hold.wait_for_calls(1)
        try:
            with chromium(width=1300, height=640) as browser:
                page = browser.new_page()
                page.goto(f"{server.url}/ui/")
                page.wait_for_selector("tr[data-state='generating']")
                page.screenshot(path=str(DOCS / "viewer-runs.png"), full_page=True)
                page.set_viewport_size({"width": 1300, "height": 900})
                page.goto(f"{server.url}/ui/run.html?id={run_id}")
                page.wait_for_selector("#run-state [data-state='completed']")
                page.screenshot(path=str(DOCS / "viewer-run.png"), full_page=True)
        finally:
            hold.release()
    print(f"wrote {DOCS / 'viewer-runs.png'} and {DOCS / 'viewer-run.png'}")


if __name__ == "__main__":
    main()
