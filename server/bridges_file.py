"""The bridges file (`fusionkit serve --bridges FILE`): which bridge serves each endpoint, read again when it changes.

A JSON object from endpoint id to bridge URL. `fusionkit up` writes `.fusionkit/bridges.json`
and starts the router while the bridges are still starting: an endpoint whose bridge has not
answered `/health` yet maps to `null`, and `up` replaces the file (atomically) with its URL once
it has, at the port it really got (an automatic port someone else took meanwhile moves first).
The router follows the file, so it calls a bridge only once `up` vouched for it, at its current
address; until then that endpoint answers 503 and reports itself not ready. An endpoint the file
does not name is called in-process.

    bridges = BridgesFile(".fusionkit/bridges.json", ["m0", "m1"])   # BridgesFileError if it is bad
    bridges.ids                # {"m0", "m1"}: the endpoints reached through a bridge
    bridges.url("m0")          # "http://127.0.0.1:41234", or None while its bridge is starting
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["BridgesFile", "BridgesFileError"]

log = logging.getLogger("fusionkit.router")


class BridgesFileError(ValueError):
    """The bridges file cannot be read, or is not an object from known endpoint ids to URLs (or null)."""


class BridgesFile:
    """One bridges file, re-read on the first lookup after it changed (a stat per lookup)."""

    def __init__(self, path: str | Path, endpoint_ids: Iterable[str]) -> None:
        self.path = Path(path)
        self._allowed = list(endpoint_ids)
        self._seen = self._version()
        self._urls = self._read()
        self.ids = frozenset(self._urls)

    def url(self, endpoint_id: str) -> str | None:
        """The bridge URL for `endpoint_id` as the file says now; None while it is not published."""
        version = self._version()
        if version is not None and version != self._seen:
            self._seen = version  # a bad version is reported once, not on every call
            try:
                self._urls = self._read()
            except BridgesFileError as exc:
                log.warning("%s; keeping the bridges it named before", exc)
        return self._urls.get(endpoint_id)

    def _version(self) -> tuple[int, int, int] | None:
        # The inode changes on every atomic replace, whatever the clock's resolution.
        try:
            stat = os.stat(self.path)
        except OSError:
            return None  # gone (`up` stopping): keep what it said last
        return stat.st_ino, stat.st_mtime_ns, stat.st_size

    def _read(self) -> dict[str, str | None]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise BridgesFileError(f"{self.path}: cannot read the bridges file ({exc})") from None
        if not isinstance(data, dict) or not all(v is None or isinstance(v, str) for v in data.values()):
            raise BridgesFileError(f"{self.path}: must be a JSON object mapping endpoint ids to URLs (or null)")
        unknown = sorted(set(data) - set(self._allowed))
        if unknown:
            raise BridgesFileError(f"{self.path}: unknown endpoint ids {unknown}; allowed: {', '.join(self._allowed)}")
        return {str(k): None if v is None else str(v).rstrip("/") for k, v in data.items()}
