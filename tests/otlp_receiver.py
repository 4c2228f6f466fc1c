"""A local OTLP/HTTP trace receiver: what an OpenTelemetry collector does with `POST /v1/traces`, kept in memory.

receiver = OtlpReceiver()
server = live_server(receiver.app())              # OTEL_EXPORTER_OTLP_ENDPOINT=server.url
spans = receiver.wait_for(lambda spans: len(spans) >= 11, timeout_s=30)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

__all__ = ["OtlpReceiver", "ReceivedSpan"]


@dataclass(frozen=True)
class ReceivedSpan:
    """One exported span, ids in hex as W3C headers write them."""

    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any] = field(default_factory=dict)
    status_code: int = 0
    start_ns: int = 0
    end_ns: int = 0


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


class OtlpReceiver:
    """Spans received over OTLP/HTTP (protobuf), and a way to wait for the ones a test expects."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.content_types: set[str] = set()
        self._changed = threading.Condition()

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/traces")
        async def traces(request: Request) -> Response:
            self.content_types.add(request.headers.get("content-type", ""))
            export = ExportTraceServiceRequest()
            export.ParseFromString(await request.body())
            received = []
            for resource_spans in export.resource_spans:
                resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        received.append(
                            ReceivedSpan(
                                service=str(resource.get("service.name")),
                                name=span.name,
                                kind=span.kind,
                                trace_id=span.trace_id.hex(),
                                span_id=span.span_id.hex(),
                                parent_span_id=span.parent_span_id.hex(),
                                attributes={a.key: _value(a.value) for a in span.attributes},
                                status_code=span.status.code,
                                start_ns=span.start_time_unix_nano,
                                end_ns=span.end_time_unix_nano,
                            )
                        )
            with self._changed:
                self.spans.extend(received)
                self._changed.notify_all()
            body = ExportTraceServiceResponse().SerializeToString()
            return Response(body, media_type="application/x-protobuf")

        return app

    def wait_for(self, enough: Callable[[list[ReceivedSpan]], bool], timeout_s: float) -> list[ReceivedSpan]:
        """The spans so far, once `enough` says so; AssertionError (listing what came) after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while not enough(self.spans):
                left = deadline - time.monotonic()
                if left <= 0:
                    names = [(s.service, s.name) for s in self.spans]
                    raise AssertionError(f"the expected spans never arrived; got {names}")
                self._changed.wait(left)
            return list(self.spans)
