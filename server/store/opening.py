"""Which run store a router opens: a SQLite file (the default) or a PostgreSQL database (replicas).

    store = open_store(store_location(config.server.run_store))

`server.run_store` is a file path or a `postgresql://` URL; `FUSIONKIT_RUN_STORE`, when set, wins
over the config (a deployment keeps the database URL and its password out of the panel config).
psycopg is imported only when a database is opened.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from server.config import run_store_location
from server.store.errors import StoreLocationError
from server.store.interface import RunStoreAPI
from server.store.runstore import RunStore

__all__ = ["RUN_STORE_ENV", "is_postgres_url", "open_store", "redact_text", "redact_url", "store_location"]

RUN_STORE_ENV = "FUSIONKIT_RUN_STORE"

# A URL's password: after the user name (`postgresql://user:secret@host`) or as a query parameter
# (`postgresql://user@host/db?password=secret`, which libpq reads as well).
_USER_PASSWORD = re.compile(r"(://[^/:@\s\"']*):[^@/\s\"']*@")
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#\s\"']*", re.IGNORECASE)


def is_postgres_url(location: str) -> bool:
    return location.startswith(("postgresql://", "postgres://"))


def redact_url(url: str) -> str:
    """The URL without its password, for logs and messages (a URL too broken to parse too)."""
    return redact_text(url)


def redact_text(text: str) -> str:
    """`text` with the password of every URL in it removed (libpq quotes the URL it could not parse).

    The one redaction of a store URL: log lines, errors, and the config loader's messages all use it.
    """
    return _QUERY_PASSWORD.sub(r"\1***", _USER_PASSWORD.sub(r"\1@", text))


def store_location(configured: str) -> str:
    """Where the run store is: `FUSIONKIT_RUN_STORE` if set, else the config's `server.run_store`.

    The variable's value is held to what the config key allows (a file path, or a postgresql:// URL
    with a valid port): StoreLocationError names the variable otherwise, as a config error names its key.
    """
    chosen = os.environ.get(RUN_STORE_ENV)
    if not chosen:
        return configured
    try:
        return run_store_location(chosen)
    except ValueError as exc:
        raise StoreLocationError(f"{RUN_STORE_ENV}: found {redact_url(chosen)!r}; allowed: {exc}") from None


def open_store(location: str | Path) -> RunStoreAPI:
    """Open (and migrate) the store at `location`: PgRunStore for a postgresql:// URL, else RunStore (SQLite).

    Raises StoreLocationError when the location cannot hold a store (a malformed URL, a directory
    that cannot be made), SchemaTooNew when a newer fusionkit wrote it.
    """
    text = str(location)
    if is_postgres_url(text):
        from server.store.pgstore import PgRunStore

        return PgRunStore(text)
    try:
        return RunStore(text)
    except OSError as exc:
        raise StoreLocationError(f"{text}: no run store can be made here ({exc.strerror or exc})") from exc
