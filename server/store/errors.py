"""The run store's errors: each names what went wrong, so callers can answer precisely (409, 404, 500)."""

from __future__ import annotations

__all__ = [
    "DuplicateRun",
    "IdempotencyConflict",
    "SchemaTooNew",
    "StoreClosed",
    "StoreError",
    "UnknownArtifact",
    "UnknownRun",
]


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
