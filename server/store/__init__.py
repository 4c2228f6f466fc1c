"""The run store: runs, their append-only events, idempotency keys and artifacts.

    async with open_store(".fusionkit/runs.sqlite3") as store:     # or a postgresql:// URL
        run = await store.create_run(new_run_id(), mode="panel", request=body, trace_id=trace)
        await store.transition(run.run_id, "generating")

`interface` holds what every store offers (RunStoreAPI); `batching` the part both backends share
(the queue, group commit, an unavailable store); `runstore` and `schema` the SQLite store and its
migrations; `pgstore`, `pgschema` and `pgrelay` the PostgreSQL store, its migrations and the
commands it carries between replicas (`relay` says what a command is); `opening` which one a
location opens; `records` the states, ids and records; `errors` what they raise; `upkeep` the
router's background care of its store (its lease, lapsed leases, retention). docs/run-store.md
tells the whole story.
"""

from server.store.errors import (
    DuplicateRun,
    IdempotencyConflict,
    RunFinished,
    SchemaTooNew,
    StoreClosed,
    StoreError,
    StoreLocationError,
    StoreUnavailable,
    UnknownArtifact,
    UnknownRun,
)
from server.store.interface import RunStoreAPI
from server.store.opening import RUN_STORE_ENV, open_store, store_location
from server.store.records import (
    RUN_STATES,
    TERMINAL_STATES,
    ArtifactRecord,
    EventRecord,
    RunRecord,
    RunState,
    StoreHealth,
    is_valid_run_id,
    new_run_id,
)
from server.store.runstore import RunStore
from server.store.schema import SCHEMA_VERSION

__all__ = [
    "RUN_STATES",
    "RUN_STORE_ENV",
    "SCHEMA_VERSION",
    "TERMINAL_STATES",
    "ArtifactRecord",
    "DuplicateRun",
    "EventRecord",
    "IdempotencyConflict",
    "RunFinished",
    "RunRecord",
    "RunState",
    "RunStore",
    "RunStoreAPI",
    "SchemaTooNew",
    "StoreClosed",
    "StoreError",
    "StoreHealth",
    "StoreLocationError",
    "StoreUnavailable",
    "UnknownArtifact",
    "UnknownRun",
    "is_valid_run_id",
    "new_run_id",
    "open_store",
    "store_location",
]
