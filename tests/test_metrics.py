"""GET /metrics on the router and the bridge: exact counts after a known sequence of requests, bounded
labels whatever clients send, and the same auth as /v1 (SPEC §12, issue 19)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bridge.adapters.chunks import text_chunk
from bridge.app import create_app as create_bridge
from bridge.auth import BearerAuth
from bridge.endpoint import EndpointConfig
from server.app import create_app
from tests.livesrv import LiveServer
from tests.router_helpers import demo_endpoints, mock_endpoint, panel_config

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str, headers: dict[str, str] | None = None) -> Samples:
    """Every sample of a /metrics page, keyed by name and sorted labels, parsed by prometheus_client."""
    response = httpx2.get(f"{url}/metrics", headers=headers or {})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 when the series does not exist (a counter never incremented)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every series of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


def series(samples: Samples, prefix: str = "fusionkit_") -> int:
    return sum(1 for name, _ in samples if name.startswith(prefix))


def ask(url: str, model: str, content: str, **extra: Any) -> Any:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": content}], **extra)


def test_router_counts_a_known_sequence_exactly(tmp_path: Path, live_server: Callable[[Any], LiveServer]) -> None:
    endpoints = demo_endpoints()
    endpoints[0]["pricing"] = {"input_per_1m_tokens": 1000.0, "output_per_1m_tokens": 2000.0}
    config = panel_config(tmp_path, endpoints, judge_model="careful", synthesizer_model="careful")
    url = live_server(create_app(config)).url

    usage = [ask(url, "fusionkit/panel", f"Compare caches, take {i}.").usage for i in range(2)]
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    chunks = list(
        client.chat.completions.create(
            model="fast",
            messages=[{"role": "user", "content": "Say hello."}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage.append(next(c.usage for c in chunks if c.usage is not None))
    with pytest.raises(openai.NotFoundError):
        ask(url, "no-such-model", "hello")
    assert httpx2.get(f"{url}/v1/models").status_code == 200
    assert httpx2.get(f"{url}/nowhere/at/all").status_code == 404
    assert httpx2.get(f"{url}/v1/fusion/runs/run_doesnotexist").status_code == 404

    m = scrape(url)
    requests = "fusionkit_http_requests_total"
    assert value(m, requests, route="/v1/chat/completions", model="fusionkit/panel", status="200") == 2
    assert value(m, requests, route="/v1/chat/completions", model="fast", status="200") == 1
    # The unknown model is refused before any run: its label is "other", never the client's string.
    assert value(m, requests, route="/v1/chat/completions", model="other", status="404") == 1
    assert value(m, requests, route="/v1/models", model="none", status="200") == 1
    assert value(m, requests, route="unmatched", model="none", status="404") == 1
    assert value(m, requests, route="/v1/fusion/runs/{run_id}", model="none", status="404") == 1
    assert value(m, "fusionkit_http_request_duration_seconds_count", route="/v1/chat/completions") == 4

    calls = "fusionkit_model_calls_total"
    for member in ("fast", "careful", "structured"):
        assert value(m, calls, endpoint=member, role="panel", outcome="ok") == 2
    assert value(m, calls, endpoint="careful", role="judge", outcome="ok") == 2
    assert value(m, calls, endpoint="careful", role="synthesizer", outcome="ok") == 2
    assert value(m, calls, endpoint="fast", role="single", outcome="ok") == 1
    assert total(m, calls) == 11
    assert value(m, "fusionkit_model_call_duration_seconds_count", endpoint="careful", role="judge") == 2
    assert value(m, "fusionkit_model_call_duration_seconds_count", endpoint="fast", role="single") == 1

    # Tokens are the runs' own usage, call by call: their sums are what the three answers reported.
    tokens = "fusionkit_model_tokens_total"
    assert total(m, tokens, direction="input") == sum(u.prompt_tokens for u in usage)
    assert total(m, tokens, direction="output") == sum(u.completion_tokens for u in usage)
    # Cost only where a price is configured ("fast"), and exactly its tokens x its price.
    fast_in, fast_out = (
        value(m, tokens, endpoint="fast", direction="input"),
        value(m, tokens, endpoint="fast", direction="output"),
    )
    cost = value(m, "fusionkit_model_cost_total", endpoint="fast", currency="USD")
    assert cost == pytest.approx((fast_in * 1000 + fast_out * 2000) / 1_000_000) and cost > 0
    assert total(m, "fusionkit_model_cost_total") == cost

    assert value(m, "fusionkit_runs_total", mode="panel", state="completed") == 2
    assert value(m, "fusionkit_runs_total", mode="single", state="completed") == 1
    assert total(m, "fusionkit_runs_in_flight") == 0
    assert value(m, "fusionkit_runs_in_flight", state="generating") == 0  # the series exists at 0
    assert value(m, "fusionkit_run_duration_seconds_count", mode="panel", state="completed") == 2
    phases = "fusionkit_run_phase_duration_seconds_count"
    assert value(m, phases, phase="generating") == 3
    assert value(m, phases, phase="judging") == 2
    assert value(m, phases, phase="synthesizing") == 2
    decisions = "fusionkit_decisions_total"
    assert value(m, decisions, decision="synthesize", reason="judged_and_synthesized") == 2
    assert value(m, decisions, decision="select_candidate", reason="single_mode") == 1
    assert total(m, "fusionkit_early_exits_total") == 0
    assert value(m, "fusionkit_time_to_first_token_seconds_count", mode="single") == 1
    assert total(m, "fusionkit_time_to_first_token_seconds_count") == 1
    assert total(m, "fusionkit_member_drops_total") == 0
    assert total(m, "fusionkit_degraded_answers_total") == 0
    assert total(m, "fusionkit_retries_total") == 0
    assert value(m, "fusionkit_store_queue_depth") == 0
    batches = value(m, "fusionkit_store_batch_size_count")
    assert batches >= 1 and value(m, "fusionkit_store_batch_size_sum") >= batches


def test_drops_retries_timeouts_degraded_answers_and_early_exits(
    tmp_path: Path, live_server: Callable[[Any], LiveServer]
) -> None:
    endpoints = [
        mock_endpoint("a", "mock-same", seed=7),
        mock_endpoint("b", "mock-same", seed=7),  # the same model and seed as "a": the same answer
        mock_endpoint("broken", "mock-broken", fail_rate=1.0),
        mock_endpoint("slow", "mock-slow", latency_ms=5000),
    ]
    config = panel_config(tmp_path, endpoints, judge_model="a", synthesizer_model="a", panel={"member_timeout_s": 1.5})
    url = live_server(create_app(config)).url
    answer = ask(url, "fusionkit/panel", "What is a write-back cache?")
    assert answer.model_extra["fusionkit"]["decision"]["reason"] == "unanimous"

    m = scrape(url)
    calls = "fusionkit_model_calls_total"
    assert value(m, calls, endpoint="broken", role="panel", outcome="error") == 1  # one call, retried inside
    assert value(m, "fusionkit_retries_total", endpoint="broken", outcome="error") == 2
    assert value(m, calls, endpoint="slow", role="panel", outcome="timeout") == 1
    assert value(m, calls, endpoint="a", role="panel", outcome="ok") == 1
    assert value(m, "fusionkit_member_drops_total", endpoint="broken") == 1
    assert value(m, "fusionkit_member_drops_total", endpoint="slow") == 1
    assert value(m, "fusionkit_degraded_answers_total", reason="member_dropped") == 1  # once per answer
    assert value(m, "fusionkit_early_exits_total", reason="unanimous") == 1
    assert value(m, "fusionkit_decisions_total", decision="select_candidate", reason="unanimous") == 1
    assert value(m, "fusionkit_runs_total", mode="panel", state="completed") == 1


@pytest.mark.slow
def test_label_values_stay_bounded_whatever_clients_send(
    tmp_path: Path, live_server: Callable[[Any], LiveServer]
) -> None:
    config = panel_config(tmp_path, demo_endpoints(), judge_model="careful", synthesizer_model="careful")
    url = live_server(create_app(config)).url

    def burst(numbers: Iterable[int]) -> None:
        with httpx2.Client(base_url=url, timeout=30) as client:
            for i in numbers:
                user = f"user string {i} \N{SNOWMAN} {'x' * (i % 50)}"
                body = {"model": f"someone's-model-{i}", "messages": [{"role": "user", "content": user}], "user": user}
                assert client.post("/v1/chat/completions", json=body).status_code == 404
                assert client.get(f"/v1/fusion/runs/run_{i:032x}").status_code == 404
                assert client.get(f"/made/up/path/{i}").status_code == 404
                if i % 50 == 0:  # real runs too, each with its own user text
                    fused = {"model": "fusionkit/panel", "messages": [{"role": "user", "content": user}], "user": user}
                    assert client.post("/v1/chat/completions", json=fused).status_code == 200

    burst(range(10))
    scrape(url)  # the scrape itself is a request: its series exist from the second one on
    before = series(scrape(url))
    burst(range(10, 1000))
    after = scrape(url)
    assert series(after) == before
    assert (
        value(after, "fusionkit_http_requests_total", route="/v1/chat/completions", model="other", status="404") == 1000
    )
    assert value(after, "fusionkit_runs_total", mode="panel", state="completed") == 20
    labels = {v for (_, ls) in after for _, v in ls}
    assert not any("user string" in v or "someone's-model" in v or "made/up" in v for v in labels)


def test_metrics_auth_follows_the_v1_key_unless_turned_off(
    tmp_path: Path, live_server: Callable[[Any], LiveServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FK_TEST_ROUTER_KEY", "sekret-router-key")
    guarded = panel_config(tmp_path, demo_endpoints(), server={"api_key_env": "FK_TEST_ROUTER_KEY"})
    url = live_server(create_app(guarded)).url
    refused = httpx2.get(f"{url}/metrics")
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "invalid_api_key"
    assert httpx2.get(f"{url}/metrics", headers={"authorization": "Bearer wrong"}).status_code == 401
    assert value(scrape(url, {"authorization": "Bearer sekret-router-key"}), "fusionkit_store_queue_depth") == 0

    open_scrape = panel_config(
        tmp_path / "open", demo_endpoints(), server={"api_key_env": "FK_TEST_ROUTER_KEY", "metrics_auth": False}
    )
    url = live_server(create_app(open_scrape)).url
    assert httpx2.get(f"{url}/metrics").status_code == 200
    assert httpx2.get(f"{url}/v1/models").status_code == 401  # the API itself is still guarded

    off = panel_config(tmp_path / "off", demo_endpoints(), server={"metrics": False})
    url = live_server(create_app(off)).url
    assert httpx2.get(f"{url}/metrics").status_code == 404


def test_bridge_counts_its_upstream_calls(live_server: Callable[[Any], LiveServer]) -> None:
    endpoint = EndpointConfig.model_validate(
        {
            "id": "solo",
            "provider": "mock",
            "model": "mock-solo",
            "pricing": {"input_per_1m_tokens": 3.0, "output_per_1m_tokens": 5.0},
        }
    )
    url = live_server(create_bridge(endpoint)).url
    usage = [ask(url, "solo", f"hello {i}").usage for i in range(2)]
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    chunks = list(
        client.chat.completions.create(
            model="solo",
            messages=[{"role": "user", "content": "stream it"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    usage.append(next(c.usage for c in chunks if c.usage is not None))
    with pytest.raises(openai.NotFoundError):
        ask(url, "other-model", "hello")

    m = scrape(url)
    assert value(m, "fusionkit_bridge_upstream_calls_total", endpoint="solo", outcome="ok") == 3
    assert total(m, "fusionkit_bridge_upstream_calls_total") == 3
    assert value(m, "fusionkit_bridge_upstream_call_duration_seconds_count", endpoint="solo") == 3
    assert value(m, "fusionkit_bridge_time_to_first_token_seconds_count", endpoint="solo") == 1
    prompt = sum(u.prompt_tokens for u in usage)
    completion = sum(u.completion_tokens for u in usage)
    assert value(m, "fusionkit_bridge_upstream_tokens_total", endpoint="solo", direction="input") == prompt
    assert value(m, "fusionkit_bridge_upstream_tokens_total", endpoint="solo", direction="output") == completion
    assert value(m, "fusionkit_bridge_upstream_cost_total", endpoint="solo", currency="USD") == pytest.approx(
        (prompt * 3 + completion * 5) / 1_000_000
    )
    requests = "fusionkit_http_requests_total"
    assert value(m, requests, route="/v1/chat/completions", model="solo", status="200") == 3
    assert value(m, requests, route="/v1/chat/completions", model="none", status="404") == 1


def test_bridge_counts_failures_and_guards_metrics(live_server: Callable[[Any], LiveServer]) -> None:
    broken = EndpointConfig(id="broken", provider="mock", model="mock-broken", mock={"fail_rate": 1.0})
    url = live_server(create_bridge(broken, auth_key="bridge-key", metrics_auth=BearerAuth("scrape-key"))).url
    headers = {"authorization": "Bearer bridge-key"}
    response = httpx2.post(
        f"{url}/v1/chat/completions",
        json={"model": "broken", "messages": [{"role": "user", "content": "hi"}]},
        headers=headers,
    )
    assert response.status_code == 502
    assert httpx2.get(f"{url}/metrics").status_code == 401
    assert httpx2.get(f"{url}/metrics", headers=headers).status_code == 401  # its own key, not the API's
    m = scrape(url, {"authorization": "Bearer scrape-key"})
    assert value(m, "fusionkit_bridge_upstream_calls_total", endpoint="broken", outcome="error") == 1
    assert total(m, "fusionkit_bridge_upstream_tokens_total") == 0
    assert httpx2.get(f"{url}/health").status_code == 200  # probes stay open

    off = live_server(create_bridge(broken, metrics=False)).url
    assert httpx2.get(f"{off}/metrics").status_code == 404


class _Faulty:
    """An adapter that breaks as adapters can: a stream that stops without a finish reason, and a bug."""

    provider = "mock"
    model = "faulty"

    async def complete(self, request: Any, ctx: Any) -> Any:
        raise RuntimeError("an adapter's bug")

    async def stream(self, request: Any, ctx: Any) -> Any:
        yield text_chunk("half an ans")

    async def aclose(self) -> None:
        return None


def test_bridge_counts_a_cut_stream_and_an_adapter_bug_as_failures(
    live_server: Callable[[Any], LiveServer],
) -> None:
    endpoint = EndpointConfig(id="faulty", provider="mock", model="faulty")
    url = live_server(create_bridge(endpoint, adapter=_Faulty())).url
    body = {"model": "faulty", "messages": [{"role": "user", "content": "hi"}]}
    streamed = httpx2.post(f"{url}/v1/chat/completions", json={**body, "stream": True})
    assert streamed.status_code == 200 and '"code":"upstream_failure"' in streamed.text
    assert httpx2.post(f"{url}/v1/chat/completions", json=body).status_code == 500

    m = scrape(url)
    assert value(m, "fusionkit_bridge_upstream_calls_total", endpoint="faulty", outcome="ok") == 0
    assert value(m, "fusionkit_bridge_upstream_calls_total", endpoint="faulty", outcome="error") == 2
