"""Log lines for both servers: readable text by default, one JSON object per line with `--log-format json`.

    setup_logging("json")
    current_log_format()                            # "json": what a helper process started now should use
    logging.getLogger("fusionkit.access").info("GET /health 200", extra={"fields": {"status": 200}})
    # {"ts": "...", "level": "INFO", "logger": "fusionkit.access", "message": "GET /health 200", "status": 200}

A record's structured `fields` (the access log's method, path, status, latency, run id, ...)
become keys of the JSON object, so a log pipeline reads them without parsing the message.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Literal

__all__ = ["JsonFormatter", "LogFormat", "current_log_format", "setup_logging"]

LogFormat = Literal["text", "json"]

# The HTTP clients log every request at INFO; our access log already says what matters.
_NOISY = ("httpx", "httpx2", "openai", "anthropic", "google_genai")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update({k: v for k, v in fields.items() if k not in line})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def current_log_format() -> LogFormat:
    """The format this process logs in, for a child process to log alike on the same stderr."""
    json_lines = any(isinstance(h.formatter, JsonFormatter) for h in logging.getLogger().handlers)
    return "json" if json_lines else "text"


def setup_logging(log_format: str = "text", level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-5s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in _NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
