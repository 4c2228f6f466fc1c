"""The router's spans leave through a helper process, which runs the OpenTelemetry SDK and its OTLP exporter.

    exporter = ExporterProcess(settings)       # a SpanSink (server/observe/spans.py)
    await exporter.start()                      # spawns `python -m server.observe.exporter`
    exporter.emit(record)                       # from the event loop: queued, never waits
    await exporter.close()                      # the helper exports what it holds, then exits

Why a process: a fused run makes 9 spans, and in Python the SDK (attribute checks, sampling, the span
processor) and the exporter (protobuf encoding, HTTP) cost about 60 µs a span. In the router that is
~1 ms of its event loop's time per fused request, a third of what the rest of a request costs it. Here
the router only writes plain records down; every 50 ms they go, marshalled in one batch, down the
helper's stdin, and the helper makes the SDK spans (`Tracing.emit`) on a core of its own, at a lower priority (nice 10)
than the router's, so that where no core is idle, telemetry is what waits.

The helper is the router's child and lives no longer than it: it reads until its stdin closes, which
happens when the router closes it or dies (even by SIGKILL), then exports what it holds and exits. It
ignores Ctrl-C (the router, interrupted too, still has spans to send) and flushes on SIGTERM.
If it cannot keep up, or is gone, spans are dropped and counted, never queued without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import marshal
import os
import signal
import sys
from typing import Any

from bridge.logs import current_log_format, setup_logging
from bridge.otel import OtelSettings, RootSampler, SpanRecord, Tracing
from bridge.tracing import TraceParent

__all__ = ["ExporterProcess", "main"]

log = logging.getLogger("fusionkit.otel")

FLUSH_S = 0.05  # how long a record waits for others to share its write
MAX_BUFFERED = 8 << 20  # bytes the helper may fall behind by before records are dropped
CLOSE_S = 5.0  # for the helper's last export: a live collector takes milliseconds, a dead one is given up on
_LENGTH = 4  # each batch: its length in 4 bytes (big-endian), then its marshal


class ExporterProcess:
    """The router's side: a SpanSink whose records a child process exports."""

    def __init__(self, settings: OtelSettings, sampler: RootSampler | None = None) -> None:
        self.settings = settings
        self.sampler = sampler or RootSampler()
        self.dropped = 0
        self._process: asyncio.subprocess.Process | None = None
        self._pending: list[tuple[Any, ...]] = []
        self._flush: asyncio.TimerHandle | None = None
        self._gone = False

    @property
    def capture_content(self) -> bool:
        return self.settings.capture_content

    async def start(self) -> None:
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "server.observe.exporter",
            json.dumps(dataclasses.asdict(self.settings)),
            current_log_format(),  # its warnings (a collector that is down) share the router's stderr
            stdin=asyncio.subprocess.PIPE,
        )

    def sampled(self, parent: TraceParent | None, trace_id: str, name: str) -> bool:
        return self.sampler.sampled(parent, trace_id, name)

    def emit(self, record: SpanRecord) -> None:
        self._pending.append(tuple(record))
        if self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(FLUSH_S, self._write)

    def _write(self) -> None:
        self._flush = None
        batch, self._pending = self._pending, []
        process = self._process
        if not batch:
            return
        # `is_closing`: it exited and the pipe broke, and asyncio has not reaped it yet.
        if self._gone or process is None or process.stdin is None or process.stdin.is_closing():
            self._drop(batch, "the span exporter process is not running")
            return
        if process.stdin.transport.get_write_buffer_size() > MAX_BUFFERED:
            self._drop(batch, "the span exporter process is falling behind")
            return
        try:
            data = marshal.dumps(batch)
        except ValueError:  # an attribute value of a type marshal does not know: our bug, not the run's
            log.exception("spans that cannot be sent to the span exporter process")
            self.dropped += len(batch)
            return
        process.stdin.write(len(data).to_bytes(_LENGTH, "big") + data)

    def _drop(self, batch: list[tuple[Any, ...]], why: str) -> None:
        if not self.dropped:
            log.warning("%s: spans are dropped (the first %d now)", why, len(batch))
        self.dropped += len(batch)

    async def close(self) -> None:
        """Send what is pending, close the helper's stdin and wait for it to export and exit."""
        if self._flush is not None:
            self._flush.cancel()
        self._write()
        process, self._gone = self._process, True
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
            with contextlib.suppress(ConnectionError):
                await process.stdin.wait_closed()
        try:
            await asyncio.wait_for(process.wait(), CLOSE_S)
        except TimeoutError:
            process.kill()
            await process.wait()
            log.warning("the span exporter process did not finish in %.0f s and was killed", CLOSE_S)
        if self.dropped:
            log.warning("%d spans were dropped in all", self.dropped)


def main() -> None:
    """The helper: batches of records on stdin, exported as SDK spans; on end of input, flush and exit."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    os.nice(10)  # serving first: on a machine with no core to spare, spans wait (or, 8 MB behind, drop)
    settings = OtelSettings(**json.loads(sys.argv[1]))
    setup_logging(sys.argv[2], level="warning")
    tracing = Tracing(settings)
    stream = sys.stdin.buffer
    try:
        while len(header := stream.read(_LENGTH)) == _LENGTH:
            size = int.from_bytes(header, "big")
            data = stream.read(size)
            if len(data) < size:
                break  # the router died mid-write: the batch is lost, what came before is exported
            for fields in marshal.loads(data):
                tracing.emit(SpanRecord(*fields))
    finally:
        tracing.shutdown()


if __name__ == "__main__":
    main()
