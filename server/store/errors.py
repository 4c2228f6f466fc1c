"""The run store's errors: each names what went wrong, so callers can answer precisely (409, 404, 503, 500)."""

from __future__ import annotations

import sqlite3

from bridge.errors import APIError

__all__ = [
    "RETRY_AFTER_S",
    "DuplicateRun",
    "IdempotencyConflict",
    "RunFinished",
    "SchemaTooNew",
    "StoreClosed",
    "StoreError",
    "StoreLocationError",
    "StoreUnavailable",
    "UnknownArtifact",
    "UnknownRun",
    "unavailable_cause",
]

# What a refused client is told to wait: about how often a degraded store is probed (server.store.upkeep).
RETRY_AFTER_S = 2

# SQLite's primary result codes that mean "this store cannot be used right now", not "this call was wrong":
# BUSY (locked past busy_timeout), READONLY, IOERR, CORRUPT, FULL, CANTOPEN, PERM (file permissions), NOTADB.
_UNAVAILABLE_CODES = frozenset({5, 8, 10, 11, 13, 14, 23, 26})


class StoreError(Exception):
    """Base of every error the run store raises on purpose."""


class IdempotencyConflict(StoreError):
    """A run with this idempotency key exists already; `run_id` names it."""

    def __init__(self, key: str, run_id: str) -> None:
        super().__init__(f"idempotency key {key!r} is already used by run {run_id}")
        self.key = key
        self.run_id = run_id


class DuplicateRun(StoreError):
    """A run with this id exists already."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id} exists already")
        self.run_id = run_id


class UnknownRun(StoreError, LookupError):
    """No run has this id."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run {run_id}")
        self.run_id = run_id


class UnknownArtifact(StoreError, LookupError):
    """No artifact has this sha256."""

    def __init__(self, sha256: str) -> None:
        super().__init__(f"no artifact {sha256}")
        self.sha256 = sha256


class RunFinished(StoreError):
    """The run has ended (completed, failed, cancelled or expired): its state and its event log are final."""

    def __init__(self, run_id: str, state: str) -> None:
        super().__init__(f"run {run_id} has ended ({state}); a finished run's state and events do not change")
        self.run_id = run_id
        self.state = state


class StoreUnavailable(StoreError, APIError):
    """The store cannot be written (or opened) right now: a full disk, a read-only or missing file, a lock.

    It is also the HTTP answer: 503 `store_unavailable` with `Retry-After`, through the shared error
    handler, so a request that cannot be recorded is refused before any model is called. The message
    says what SQLite said, never the file's path (that goes to the log).
    """

    def __init__(self, reason: str) -> None:
        APIError.__init__(
            self,
            503,
            f"the run store is unavailable ({reason}); the router records every run, so it cannot take new "
            "ones until the store can be written again",
            type="server_error",
            code="store_unavailable",
            retry_after=str(RETRY_AFTER_S),
        )
        self.reason = reason


def unavailable_cause(exc: BaseException) -> str | None:
    """What made the store unavailable, if `exc` says it is (else None: the call itself was at fault)."""
    if isinstance(exc, StoreUnavailable):
        return exc.reason
    if isinstance(exc, sqlite3.OperationalError | sqlite3.DatabaseError) and not isinstance(
        exc, sqlite3.IntegrityError | sqlite3.ProgrammingError
    ):
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None and code & 0xFF in _UNAVAILABLE_CODES:
            return str(exc)
    if isinstance(exc, OSError):  # the directory could not be created, the file could not be checked
        return exc.strerror or str(exc)
    return None


class StoreLocationError(StoreError, ValueError):
    """The store's location cannot be used at all: a malformed URL, a path where no file can be made.

    Unlike an unavailable store, waiting does not help: a router or command fails its start on it.
    The message never holds a password.
    """


class StoreClosed(StoreError):
    """The store was closed; nothing more can be read or written through it."""


class SchemaTooNew(StoreError):
    """The database was written by a newer fusionkit whose schema this one does not know."""

    def __init__(self, path: str, found: int, known: int) -> None:
        super().__init__(
            f"{path} has run store schema version {found}, but this fusionkit knows versions up to {known}: "
            "upgrade fusionkit or point server.run_store at another file"
        )
        self.found = found
        self.known = known
