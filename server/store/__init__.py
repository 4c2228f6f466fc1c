"""The run store (SPEC §7): runs, their append-only events, idempotency keys and artifacts, in SQLite.

    async with RunStore(".fusionkit/runs.sqlite3") as store:
        run = await store.create_run(new_run_id(), mode="panel", request=body, trace_id=trace)
        await store.transition(run.run_id, "generating")

`records` holds the states, ids and records; `schema` the SQLite schema and its migrations;
`runstore` the RunStore itself; `errors` what it raises; `upkeep` the router's background care of
it (its lease on its runs, lapsed leases, retention). docs/run-store.md tells the whole story.
"""

from server.store.errors import (
    DuplicateRun,
    IdempotencyConflict,
    RunFinished,
    SchemaTooNew,
    StoreClosed,
    StoreError,
    StoreUnavailable,
    UnknownArtifact,
    UnknownRun,
)
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
    "SchemaTooNew",
    "StoreClosed",
    "StoreError",
    "StoreHealth",
    "StoreUnavailable",
    "UnknownArtifact",
    "UnknownRun",
    "is_valid_run_id",
    "new_run_id",
]
