"""OpenTelemetry traces (SPEC §12, issue 19): one trace per run, spans per phase and model call after the
GenAI semantic conventions, the client's W3C `traceparent` carried router -> bridge -> provider, and no
SDK at all when tracing is off."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import openai
import psutil
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from bridge.app import create_app as create_bridge
from bridge.endpoint import EndpointConfig
from bridge.otel import OtelSettings, RootSampler, Tracing
from bridge.tracing import TraceParent
from server.app import create_app
from server.clients import build_clients
from tests.livesrv import LiveServer, free_port
from tests.otlp_receiver import OtlpReceiver
from tests.router_helpers import demo_endpoints, mock_endpoint, panel_config
from tests.standins.openai_standin import create_openai_standin
from tests.standins.recorder import StandinState
from tests.up_helpers import ROOT, exporters_of, start_up, state, stop, wait_for_output, write_config

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"
OTLP_CLIENT = 3  # SPAN_KIND_CLIENT in OTLP's numbering
QUESTION = [{"role": "user", "content": "Compare write-through and write-back caching."}]


def memory_tracing(service: str, *, capture_content: bool = False) -> tuple[Tracing, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    return Tracing(OtelSettings(service_name=service, capture_content=capture_content), exporter), exporter


def hexid(value: int, width: int) -> str:
    return f"{value:0{width}x}"


def parent_of(span: ReadableSpan) -> str | None:
    return hexid(span.parent.span_id, 16) if span.parent is not None else None


def span_id(span: ReadableSpan) -> str:
    assert span.context is not None
    return hexid(span.context.span_id, 16)


def trace_of(span: ReadableSpan) -> str:
    assert span.context is not None
    return hexid(span.context.trace_id, 32)


def run_events(url: str, run_id: str) -> list[dict[str, Any]]:
    page = httpx2.get(f"{url}/v1/fusion/runs/{run_id}/events").json()
    return [e["payload"]["fusionkit"] for e in page["events"]]


def test_a_panel_run_is_one_trace_of_phases_and_model_calls(
    tmp_path: Path, live_server: Callable[[Any], LiveServer]
) -> None:
    tracing, exporter = memory_tracing("fusionkit-router")
    config = panel_config(tmp_path, demo_endpoints(), judge_model="careful", synthesizer_model="careful")
    url = live_server(create_app(config, tracing=tracing)).url
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="fusionkit/panel", messages=QUESTION, extra_headers={"traceparent": TRACEPARENT}
    )
    reply = raw.parse()
    meta = reply.model_extra["fusionkit"]
    assert meta["trace_id"] == CLIENT_TRACE == raw.headers["x-fusion-trace-id"]  # the run joined the client's trace

    spans = exporter.get_finished_spans()
    assert {trace_of(s) for s in spans} == {CLIENT_TRACE}
    (root,) = [s for s in spans if s.name == "invoke_workflow fusionkit/panel"]
    assert parent_of(root) == CLIENT_SPAN and root.kind == SpanKind.SERVER
    assert root.attributes is not None
    assert root.attributes["gen_ai.operation.name"] == "invoke_workflow"
    assert root.attributes["fusionkit.run_id"] == meta["run_id"]
    assert root.attributes["fusionkit.state"] == "completed"
    assert root.status.status_code != StatusCode.ERROR
    phases = {s.name: s for s in spans if parent_of(s) == span_id(root)}
    assert sorted(phases) == ["generating", "judging", "synthesizing"]

    calls = [s for s in spans if s.name.startswith("chat ")]
    by_phase = {name: sorted(s.name for s in calls if parent_of(s) == span_id(phase)) for name, phase in phases.items()}
    assert by_phase == {
        "generating": ["chat mock-cautious", "chat mock-concise", "chat mock-structured"],
        "judging": ["chat mock-cautious"],
        "synthesizing": ["chat mock-cautious"],
    }
    # Each call's span is the span its run events name (and the bridge would get as x-fusion-span-id).
    events = run_events(url, meta["run_id"])
    completed = {e["payload"]["span_id"]: e["payload"] for e in events if e["type"] == "model_call.completed"}
    assert {span_id(s) for s in calls} == set(completed)
    for span in calls:
        recorded = completed[span_id(span)]
        attributes = span.attributes or {}
        assert span.kind == SpanKind.CLIENT
        assert attributes["gen_ai.operation.name"] == "chat"
        assert attributes["gen_ai.provider.name"] == "fusionkit.mock"
        assert attributes["gen_ai.request.model"] == span.name.removeprefix("chat ")
        assert attributes["fusionkit.endpoint_id"] == recorded["endpoint_id"]
        assert attributes["fusionkit.role"] == recorded["role"]
        assert attributes["gen_ai.usage.input_tokens"] == recorded["usage"]["prompt_tokens"]
        assert attributes["gen_ai.usage.output_tokens"] == recorded["usage"]["completion_tokens"]
        assert list(attributes["gen_ai.response.finish_reasons"]) == [recorded["finish_reason"]]
        assert "gen_ai.input.messages" not in attributes  # content only when asked for
    assert root.attributes["gen_ai.usage.input_tokens"] == reply.usage.prompt_tokens
    assert root.attributes["gen_ai.usage.output_tokens"] == reply.usage.completion_tokens


def test_without_a_client_trace_each_run_is_a_trace_of_its_own(
    tmp_path: Path, live_server: Callable[[Any], LiveServer]
) -> None:
    tracing, exporter = memory_tracing("fusionkit-router", capture_content=True)
    config = panel_config(tmp_path, [mock_endpoint("solo")])
    url = live_server(create_app(config, tracing=tracing)).url
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    first = client.chat.completions.create(model="solo", messages=QUESTION).model_extra["fusionkit"]
    # A malformed traceparent is ignored (W3C), never an error.
    second = client.chat.completions.create(
        model="solo", messages=QUESTION, extra_headers={"traceparent": "00-" + "0" * 32 + "-" + CLIENT_SPAN + "-01"}
    ).model_extra["fusionkit"]
    roots = [s for s in exporter.get_finished_spans() if s.name.startswith("invoke_workflow")]
    assert [trace_of(s) for s in roots] == [first["trace_id"], second["trace_id"]]
    assert first["trace_id"] != second["trace_id"] and all(s.parent is None for s in roots)
    # With content capture on, the run's span holds the question and the answer, in the conventions' shape.
    attributes = roots[0].attributes or {}
    asked = json.loads(str(attributes["gen_ai.input.messages"]))
    assert asked == [{"role": "user", "parts": [{"type": "text", "content": QUESTION[0]["content"]}]}]
    answered = json.loads(str(attributes["gen_ai.output.messages"]))
    assert answered[0]["role"] == "assistant" and answered[0]["parts"][0]["content"]


def test_the_sdks_limit_on_attribute_length_applies_to_run_spans(
    tmp_path: Path, live_server: Callable[[Any], LiveServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "16")
    tracing, exporter = memory_tracing("fusionkit-router", capture_content=True)
    url = live_server(create_app(panel_config(tmp_path, [mock_endpoint("solo")]), tracing=tracing)).url
    assert httpx2.post(f"{url}/v1/chat/completions", json={"model": "solo", "messages": QUESTION}).status_code == 200
    (root,) = [s for s in exporter.get_finished_spans() if s.name.startswith("invoke_workflow")]
    attributes = root.attributes or {}
    assert attributes["gen_ai.input.messages"] == '[{"role": "user"'  # the conversation, cut to 16 characters
    assert attributes["fusionkit.state"] == "completed"


def test_a_failed_call_is_an_error_span_and_the_run_says_why(
    tmp_path: Path, live_server: Callable[[Any], LiveServer]
) -> None:
    tracing, exporter = memory_tracing("fusionkit-router")
    config = panel_config(tmp_path, [mock_endpoint("broken", fail_rate=1.0)])
    url = live_server(create_app(config, tracing=tracing)).url
    response = httpx2.post(
        f"{url}/v1/chat/completions",
        json={"model": "broken", "messages": QUESTION},
        headers={"traceparent": TRACEPARENT},
    )
    assert response.status_code == 502
    spans = exporter.get_finished_spans()
    (call,) = [s for s in spans if s.name == "chat mock-broken"]
    assert call.status.status_code == StatusCode.ERROR
    assert (call.attributes or {})["error.type"] == "502"
    (root,) = [s for s in spans if s.name.startswith("invoke_workflow")]
    assert root.status.status_code == StatusCode.ERROR and (root.attributes or {})["fusionkit.state"] == "failed"


def test_runs_the_sampler_turns_down_record_no_spans(
    tmp_path: Path, live_server: Callable[[Any], LiveServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = panel_config(tmp_path, [mock_endpoint("solo")])

    def traced(*traceparents: str) -> list[ReadableSpan]:
        """The spans of runs asked with these `traceparent` headers ("": none), by a router traced in memory."""
        tracing, exporter = memory_tracing("fusionkit-router")
        url = live_server(create_app(config, tracing=tracing)).url
        for header in traceparents:
            response = httpx2.post(
                f"{url}/v1/chat/completions",
                json={"model": "solo", "messages": QUESTION},
                headers={"traceparent": header} if header else {},
            )
            assert response.status_code == 200
        return list(exporter.get_finished_spans())

    # By default (parentbased_always_on) a run follows its client: not sampled there, not recorded here.
    unsampled = f"00-{'1' * 32}-{CLIENT_SPAN}-00"
    assert {trace_of(s) for s in traced(unsampled, TRACEPARENT)} == {CLIENT_TRACE}
    # The SDK's variables choose the sampler, for the router's helper process as for an in-process tracer.
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    assert traced(TRACEPARENT, "") == []
    assert RootSampler().sampled(None, CLIENT_TRACE, "invoke_workflow fusionkit/panel") is False
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.5")  # keeps the traces whose low 64 bits are small
    assert RootSampler().sampled(None, "f" * 16 + "0" * 16, "run") is True
    assert RootSampler().sampled(None, "0" * 16 + "f" * 16, "run") is False


def test_a_run_the_router_does_not_sample_is_not_traced_by_its_bridges_either(
    tmp_path: Path, live_server: Callable[[Any], LiveServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    standin = StandinState()
    upstream = live_server(create_openai_standin(standin)).url
    endpoint = {"id": "up", "provider": "openai-compatible", "model": "gpt-standin", "base_url": f"{upstream}/v1"}
    config = panel_config(tmp_path, [endpoint])
    bridge_tracing, bridge_spans = memory_tracing("fusionkit-bridge")  # parentbased_always_on: follows its caller
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    router_tracing, router_spans = memory_tracing("fusionkit-router")  # samples no run
    bridge = live_server(create_bridge(EndpointConfig.model_validate(endpoint), tracing=bridge_tracing)).url
    app = create_app(config, clients=build_clients(config, {"up": bridge}), tracing=router_tracing)
    client = openai.OpenAI(base_url=f"{live_server(app).url}/v1", api_key="x", max_retries=0)
    client.chat.completions.create(model="up", messages=QUESTION)
    assert router_spans.get_finished_spans() == () and bridge_spans.get_finished_spans() == ()
    sent = TraceParent.parse(standin.headers[0]["traceparent"])
    assert sent is not None and sent.sampled is False  # the provider is told too


def test_router_bridge_and_provider_share_one_trace(tmp_path: Path, live_server: Callable[[Any], LiveServer]) -> None:
    standin = StandinState()
    upstream = live_server(create_openai_standin(standin)).url
    endpoint = {"id": "up", "provider": "openai-compatible", "model": "gpt-standin", "base_url": f"{upstream}/v1"}
    config = panel_config(tmp_path, [endpoint])
    bridge_tracing, bridge_spans = memory_tracing("fusionkit-bridge", capture_content=True)
    bridge = live_server(create_bridge(EndpointConfig.model_validate(endpoint), tracing=bridge_tracing)).url
    router_tracing, router_spans = memory_tracing("fusionkit-router")
    app = create_app(config, clients=build_clients(config, {"up": bridge}), tracing=router_tracing)
    url = live_server(app).url

    client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    reply = client.chat.completions.create(model="up", messages=QUESTION, extra_headers={"traceparent": TRACEPARENT})
    list(client.chat.completions.create(model="up", messages=QUESTION, stream=True))  # a second run, streamed

    (router_call, _) = [s for s in router_spans.get_finished_spans() if s.name == "chat gpt-standin"]
    (bridge_call, streamed_call) = bridge_spans.get_finished_spans()
    assert trace_of(router_call) == trace_of(bridge_call) == CLIENT_TRACE
    assert parent_of(bridge_call) == span_id(router_call)  # router -> bridge
    attributes = bridge_call.attributes or {}
    assert bridge_call.kind == SpanKind.CLIENT and bridge_call.name == "chat gpt-standin"
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "openai_compatible"
    assert attributes["gen_ai.request.model"] == "gpt-standin"
    assert attributes["gen_ai.usage.input_tokens"] == reply.usage.prompt_tokens
    assert attributes["gen_ai.usage.output_tokens"] == reply.usage.completion_tokens
    assert attributes["fusionkit.candidate_id"] == "c1"
    assert QUESTION[0]["content"] in str(attributes["gen_ai.input.messages"])  # capture on at the bridge only
    assert not any("gen_ai.input.messages" in (s.attributes or {}) for s in router_spans.get_finished_spans())
    # bridge -> provider: the SDK's request carried the bridge span's context.
    sent = TraceParent.parse(standin.headers[0]["traceparent"])
    assert sent == TraceParent(CLIENT_TRACE, span_id(bridge_call), True)
    assert (streamed_call.attributes or {})["gen_ai.response.time_to_first_chunk"] >= 0
    assert TraceParent.parse(standin.headers[1]["traceparent"]) == TraceParent(
        trace_of(streamed_call), span_id(streamed_call), True
    )


def test_a_bridge_with_tracing_off_passes_the_callers_context_on(live_server: Callable[[Any], LiveServer]) -> None:
    standin = StandinState()
    upstream = live_server(create_openai_standin(standin)).url
    endpoint = EndpointConfig(id="up", provider="openai-compatible", model="gpt-standin", base_url=f"{upstream}/v1")
    bridge = live_server(create_bridge(endpoint)).url
    client = openai.OpenAI(base_url=f"{bridge}/v1", api_key="x", max_retries=0)
    client.chat.completions.create(model="up", messages=QUESTION, extra_headers={"traceparent": TRACEPARENT})
    assert standin.headers[-1]["traceparent"] == TRACEPARENT


def _loads_the_sdk(config: Path, env: dict[str, str]) -> bool:
    probe = (
        "import sys; from fusionkit_cli.config_loader import load_config; from server.app import create_app; "
        f"create_app(load_config({str(config)!r})); "
        "print(any(m.startswith('opentelemetry.sdk') for m in sys.modules))"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, "-c", probe], env={**clean, **env}, capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip() == "True"


def test_tracing_off_never_imports_the_sdk(tmp_path: Path) -> None:
    config = tmp_path / "panel.yaml"
    config.write_text(json.dumps({"endpoints": [mock_endpoint("m")], "server": {"run_store": str(tmp_path / "r.db")}}))
    assert _loads_the_sdk(config, {}) is False
    assert _loads_the_sdk(config, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}) is True
    assert (
        _loads_the_sdk(config, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_SDK_DISABLED": "true"})
        is False
    )


def test_traceparent_parsing_follows_w3c() -> None:
    assert TraceParent.parse(TRACEPARENT) == TraceParent(CLIENT_TRACE, CLIENT_SPAN, True)
    assert TraceParent.parse(f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-00") == TraceParent(CLIENT_TRACE, CLIENT_SPAN, False)
    # A later version may add fields after the flags; version ff, upper case, zero ids or extra text are invalid.
    assert TraceParent.parse(f"01-{CLIENT_TRACE}-{CLIENT_SPAN}-01-later") == TraceParent(
        CLIENT_TRACE, CLIENT_SPAN, True
    )
    for bad in (
        f"ff-{CLIENT_TRACE}-{CLIENT_SPAN}-01",
        f"00-{CLIENT_TRACE.upper()}-{CLIENT_SPAN}-01",
        f"00-{'0' * 32}-{CLIENT_SPAN}-01",
        f"00-{CLIENT_TRACE}-{'0' * 16}-01",
        f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01-extra",
        "garbage",
        "",
    ):
        assert TraceParent.parse(bad) is None, bad


@pytest.mark.slow
def test_up_exports_one_trace_across_router_and_bridges_over_otlp_http_and_shows_its_metrics(
    tmp_path: Path, live_server: Callable[[Any], LiveServer]
) -> None:
    receiver = OtlpReceiver()
    collector = live_server(receiver.app()).url
    port = free_port()
    config = write_config(tmp_path, port, judge_model="m1", synthesizer_model="m1", server={"api_key_env": "FK_UP_KEY"})
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector, "OTEL_BSP_SCHEDULE_DELAY": "100", "FK_UP_KEY": "up-router-key"}
    key = {"authorization": "Bearer up-router-key"}
    proc = start_up(tmp_path, config, env=env)
    pids: list[int] = []
    helpers: list[psutil.Process] = []
    try:
        banner = wait_for_output(proc, "stop: Ctrl-C or fusionkit down", timeout_s=60)
        children = state(tmp_path)["children"]
        pids = [c["pid"] for c in children]
        helpers = [helper for pid in pids for helper in exporters_of(pid)]
        assert len(helpers) == 1  # the router's span exporter; a bridge, one span a call, exports in-process
        # The banner says where each process's metrics are; each answers there with the router's key only.
        assert "metrics (Prometheus), with Authorization: Bearer $FK_UP_KEY:" in banner
        for child in children:
            assert f"{child['url']}/metrics" in banner
            assert httpx2.get(f"{child['url']}/metrics").status_code == 401
            assert httpx2.get(f"{child['url']}/metrics", headers=key).status_code == 200
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="up-router-key", max_retries=0)
        reply = client.chat.completions.create(
            model="fusionkit/panel", messages=QUESTION, extra_headers={"traceparent": TRACEPARENT}
        )
        assert reply.model_extra["fusionkit"]["decision"]["reason"] == "judged_and_synthesized"

        def complete(spans: list[Any]) -> bool:
            ours = [s for s in spans if s.trace_id == CLIENT_TRACE]
            return sum(s.service == "fusionkit-bridge" for s in ours) == 5 and any(
                s.name.startswith("invoke_workflow") for s in ours
            )

        spans = [s for s in receiver.wait_for(complete, timeout_s=30) if s.trace_id == CLIENT_TRACE]
        assert receiver.content_types == {"application/x-protobuf"}
        router = [s for s in spans if s.service == "fusionkit-router"]
        bridges = [s for s in spans if s.service == "fusionkit-bridge"]
        (root,) = [s for s in router if s.name == "invoke_workflow fusionkit/panel"]
        assert root.parent_span_id == CLIENT_SPAN
        router_calls = {s.span_id: s for s in router if s.name.startswith("chat ")}
        assert len(router_calls) == 5
        phases = {s.span_id: s.name for s in router if s.parent_span_id == root.span_id}
        assert sorted(phases.values()) == ["generating", "judging", "synthesizing"]
        assert all(call.parent_span_id in phases for call in router_calls.values())
        # Every bridge span hangs under the router's span for the same call, and names the same model.
        for span in bridges:
            caller = router_calls[span.parent_span_id]
            assert span.name == caller.name and span.kind == OTLP_CLIENT
            assert span.attributes["gen_ai.operation.name"] == "chat"
            assert span.attributes["gen_ai.request.model"] == caller.attributes["gen_ai.request.model"]
            assert span.attributes["fusionkit.endpoint_id"] == caller.attributes["fusionkit.endpoint_id"]
            assert span.attributes["gen_ai.usage.output_tokens"] == caller.attributes["gen_ai.usage.output_tokens"] > 0
        assert {s.parent_span_id for s in bridges} == set(router_calls)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        stop(proc, pids)
    _, left = psutil.wait_procs(helpers, timeout=10)
    assert not left, "the span exporter outlived fusionkit up"
