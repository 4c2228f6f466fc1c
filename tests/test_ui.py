"""The run viewer at /ui (SPEC §12, issue 19), in a real headless Chromium (Debian's `chromium`, driven by
Playwright; .ci/run installs it): the list, a run page for each front door, a running run followed live."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from playwright.sync_api import BrowserContext, Page

from server.app import create_app
from server.clients import build_clients
from tests.browser import chromium
from tests.held_calls import Hold
from tests.livesrv import LiveServer
from tests.router_helpers import demo_endpoints, mock_endpoint, panel_config

QUESTION = [{"role": "user", "content": "Compare write-through and write-back caching."}]
WAIT_MS = 15_000


@pytest.fixture(scope="module")
def browser() -> Iterator[BrowserContext]:
    try:
        with chromium() as context:
            yield context
    except FileNotFoundError as missing:
        pytest.fail(str(missing))


@pytest.fixture
def page(browser: BrowserContext) -> Iterator[Page]:
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    page.close()
    assert errors == [], f"the page threw: {errors}"


def fused(url: str, model: str = "fusionkit/panel", headers: dict[str, str] | None = None) -> str:
    response = httpx2.post(
        f"{url}/v1/chat/completions", json={"model": model, "messages": QUESTION}, headers=headers or {}, timeout=30
    )
    return str(response.headers["x-fusion-run-id"])


def inspect(url: str, run_id: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    return dict(httpx2.get(f"{url}/v1/fusion/runs/{run_id}/inspect", headers=headers or {}).json())


def rows(page: Page) -> dict[str, str]:
    """The list's rows: run id -> state, as the page shows them."""
    return {
        row.get_attribute("data-run-id") or "": row.get_attribute("data-state") or ""
        for row in page.locator("#runs tbody tr").all()
    }


def test_the_list_shows_finished_runs_newest_first_and_filters_them(
    tmp_path: Path, live_server: Callable[[Any], LiveServer], page: Page
) -> None:
    config = panel_config(tmp_path, [*demo_endpoints(), mock_endpoint("broken", fail_rate=1.0)])
    url = live_server(create_app(config)).url
    panel = fused(url)
    single = fused(url, "fast")
    failed = fused(url, "broken")

    page.goto(f"{url}/ui/")
    page.wait_for_selector(f"tr[data-run-id='{failed}']", timeout=WAIT_MS)
    assert list(rows(page)) == [failed, single, panel]  # newest first
    assert rows(page) == {failed: "failed", single: "completed", panel: "completed"}
    panel_row = page.locator(f"tr[data-run-id='{panel}']")
    assert "fast, careful, structured" in panel_row.inner_text()
    assert "judged_and_synthesized" in panel_row.inner_text()

    page.select_option("#f-state", "failed")
    assert list(rows(page)) == [failed]
    page.select_option("#f-state", "")
    page.select_option("#f-mode", "single")
    assert set(rows(page)) == {single, failed}
    page.select_option("#f-mode", "")
    page.select_option("#f-model", "structured")
    assert list(rows(page)) == [panel]
    page.select_option("#f-model", "")
    page.select_option("#f-since", "900")
    assert len(rows(page)) == 3

    page.click(f"tr[data-run-id='{panel}'] a")
    page.wait_for_selector(".call-bar", timeout=WAIT_MS)
    assert page.url.endswith(f"/ui/run.html?id={panel}")


def test_the_run_page_shows_every_candidate_the_timeline_the_judge_and_the_diff(
    tmp_path: Path, live_server: Callable[[Any], LiveServer], page: Page
) -> None:
    endpoints = [*demo_endpoints(structured={"fail_rate": 1.0})]
    endpoints[0]["pricing"] = {"input_per_1m_tokens": 1.0, "output_per_1m_tokens": 2.0}
    config = panel_config(tmp_path, endpoints, judge_model="careful", synthesizer_model="careful")
    url = live_server(create_app(config)).url
    run_id = fused(url)
    seen = inspect(url, run_id)
    calls = seen["fusionkit"]["model_calls"]

    page.goto(f"{url}/ui/run.html?id={run_id}")
    page.wait_for_selector("#run-state [data-state='completed']", timeout=WAIT_MS)
    # One bar per model call, as many as the run made (the failed member's call included, in red).
    assert page.locator(".call-bar").count() == len(calls) == 5
    assert page.locator(".call-bar.failed").count() == 1
    assert sorted(page.locator(".call-bar").evaluate_all("bars => bars.map(b => b.dataset.role)")) == sorted(
        c["role"] for c in calls
    )
    # Every candidate side by side, the dropped one with its reason.
    cards = {c.get_attribute("data-candidate"): c.inner_text() for c in page.locator(".candidate").all()}
    assert set(cards) == {"c1", "c2", "c3"}
    assert "mock-concise" in cards["c1"] and "mock-cautious" in cards["c2"]
    assert "Dropped:" in cards["c3"] and "failed on purpose" in cards["c3"]
    c1 = next(c for c in calls if c["candidate_id"] == "c1")
    assert f"{c1['usage']['prompt_tokens']} in / {c1['usage']['completion_tokens']} out" in cards["c1"]
    assert "cost 0.0000" in cards["c1"] and "not priced" in cards["c2"]
    for detail in seen["fusionkit"]["candidates"]:
        if detail["status"] == "ok":
            assert detail["text"].splitlines()[0] in cards[detail["candidate_id"]]
    # The judge's analysis, the answer against the candidate it drew most from, the problems.
    analysis = seen["fusionkit"]["judge"]["analysis"]
    assert analysis["consensus"][0] in page.inner_text("#analysis")
    assert page.inner_text("#final") == seen["final_output"]
    assert page.inner_text("#drew-from").startswith("Drew most from c")
    assert page.locator("#diff ins, #diff del").count() > 0
    assert "failed on purpose" in page.inner_text("#problems")
    assert "chat.completions" in page.inner_text("#facts")


def test_runs_from_every_front_door_are_shown(
    tmp_path: Path, live_server: Callable[[Any], LiveServer], page: Page
) -> None:
    config = panel_config(tmp_path, demo_endpoints(), judge_model="careful", synthesizer_model="careful")
    url = live_server(create_app(config)).url
    messages = httpx2.post(
        f"{url}/v1/messages",
        json={"model": "fusionkit/panel", "max_tokens": 512, "messages": QUESTION},
        headers={"anthropic-version": "2023-06-01"},
        timeout=30,
    )
    responses = httpx2.post(
        f"{url}/v1/responses", json={"model": "fusionkit/panel", "input": QUESTION[0]["content"]}, timeout=30
    )
    for answer, door in ((messages, "messages"), (responses, "responses")):
        assert answer.status_code == 200, answer.text
        run_id = answer.headers["x-fusion-run-id"]
        page.goto(f"{url}/ui/run.html?id={run_id}")
        page.wait_for_selector("#run-state [data-state='completed']", timeout=WAIT_MS)
        assert door in page.inner_text("#facts")
        assert page.locator(".candidate").count() == 3
        assert page.locator(".call-bar").count() == len(inspect(url, run_id)["fusionkit"]["model_calls"])
        assert page.inner_text("#final")


def test_a_running_run_is_followed_live_without_a_reload(
    tmp_path: Path, live_server: Callable[[Any], LiveServer], page: Page
) -> None:
    config = panel_config(tmp_path, demo_endpoints(), judge_model="careful", synthesizer_model="careful")
    clients = build_clients(config)
    hold = Hold()
    hold.endpoint(clients["structured"])  # its answer waits until the test lets it go
    url = live_server(create_app(config, clients=clients)).url
    created = httpx2.post(
        f"{url}/v1/fusion/runs", json={"messages": QUESTION, "mode": "panel"}, headers={"Prefer": "respond-async"}
    )
    run_id = created.json()["run_id"]
    hold.wait_for_calls(1)
    try:
        page.goto(f"{url}/ui/run.html?id={run_id}")
        page.wait_for_selector("#run-state [data-state='generating']", timeout=WAIT_MS)
        page.wait_for_selector(".call-bar.running[data-role='panel']", timeout=WAIT_MS)
        assert page.locator(".candidate").count() == 3  # two answered, one still waited for
        page.evaluate("window.notReloaded = true")

        lister = page.context.new_page()
        lister.goto(f"{url}/ui/")
        lister.wait_for_selector(f"tr[data-run-id='{run_id}'][data-state='generating']", timeout=WAIT_MS)
        lister.evaluate("window.notReloaded = true")
    finally:
        hold.release()
    page.wait_for_selector("#run-state [data-state='completed']", timeout=WAIT_MS)
    assert page.evaluate("window.notReloaded") is True
    assert page.locator(".call-bar").count() == 5 and page.locator(".call-bar.running").count() == 0
    assert page.locator(".candidate .badge[data-state='waiting']").count() == 0
    lister.wait_for_selector(f"tr[data-run-id='{run_id}'][data-state='completed']", timeout=WAIT_MS)
    assert lister.evaluate("window.notReloaded") is True
    lister.close()


def test_the_pages_ask_for_the_key_and_send_it_as_a_bearer_token(
    tmp_path: Path, live_server: Callable[[Any], LiveServer], page: Page, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FK_TEST_UI_KEY", "ui-secret-key")
    config = panel_config(tmp_path, demo_endpoints(), server={"api_key_env": "FK_TEST_UI_KEY"})
    url = live_server(create_app(config)).url
    auth = {"authorization": "Bearer ui-secret-key"}
    run_id = fused(url, headers=auth)
    assert httpx2.get(f"{url}/v1/fusion/runs").status_code == 401  # the data needs the key ...
    assert httpx2.get(f"{url}/ui/").status_code == 200  # ... the pages, which hold none, do not

    page.goto(f"{url}/ui/")
    page.wait_for_selector("#keybar:not([hidden])", timeout=WAIT_MS)
    assert page.locator("#runs tbody tr").count() == 0
    page.fill("#key", "wrong key")
    page.click("#keyform button[type=submit]")
    page.wait_for_selector("#keybar:not([hidden])", timeout=WAIT_MS)
    assert "refused" in page.inner_text("#keywhy")
    page.fill("#key", "ui-secret-key")
    page.click("#keyform button[type=submit]")
    page.wait_for_selector(f"tr[data-run-id='{run_id}']", timeout=WAIT_MS)
    assert page.evaluate("sessionStorage.getItem('fusionkit.key')") == "ui-secret-key"
    page.click(f"tr[data-run-id='{run_id}'] a")  # the key goes along to the run page, in the same tab
    page.wait_for_selector("#run-state [data-state='completed']", timeout=WAIT_MS)
    assert page.locator(".candidate").count() == 3


def test_the_viewer_is_package_data_with_nothing_fetched_from_elsewhere() -> None:
    from server.observe.ui import UI_DIR

    files = sorted(p.name for p in UI_DIR.iterdir())
    assert files == ["common.js", "diff.js", "index.html", "list.js", "run.html", "run.js", "viewer.css"]
    for path in UI_DIR.iterdir():
        text = path.read_text()
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "") and "https://" not in text, path.name
