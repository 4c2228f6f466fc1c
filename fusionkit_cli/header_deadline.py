"""Closing connections that do not send a complete request head in time (slow clients).

    protocol = header_deadline_protocol(10.0)
    uvicorn.Config(app, http=protocol, ...)   # what `run_server` does for both servers

uvicorn closes a keep-alive connection that idles between requests, but not one that never
finishes its request line and headers: five hundred such clients hold five hundred descriptors
(and the server's accept loop) for as long as they like. The deadline starts when a connection
opens, and again when the next request on it begins; the head must be complete by then, or the
connection gets a 408 (when it sent anything) and is closed. A body, once the head is in, is the
application's to read.
"""

from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["HeaderDeadlineProtocol", "header_deadline_protocol"]

log = logging.getLogger("fusionkit.access")

_TIMED_OUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 37\r\nconnection: close\r\n\r\nrequest headers not received in time\n"
)


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with a deadline on each request's head (`header_timeout_s`)."""

    header_timeout_s = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._head_deadline: asyncio.TimerHandle | None = None
        self._head_started = False
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        self._head_started = True
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_deadline is None:  # the next request on a kept-alive connection
            self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        # Idle until the next request is uvicorn's keep-alive timeout's business, not this deadline's.
        self._head_started = False
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._head_deadline = self.loop.call_later(self.header_timeout_s, self._too_slow)

    def _disarm(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _too_slow(self) -> None:
        self._head_deadline = None
        if self.transport.is_closing():
            return
        if self._head_started:
            self.transport.write(_TIMED_OUT)
        log.debug("closed %s: no complete request head within %gs", self.client, self.header_timeout_s)
        self.transport.close()


def header_deadline_protocol(header_timeout_s: float) -> type[HeaderDeadlineProtocol]:
    """The protocol class for uvicorn's `http=` with this deadline (uvicorn builds one instance per connection)."""
    return type("HeaderDeadlineProtocol", (HeaderDeadlineProtocol,), {"header_timeout_s": header_timeout_s})
