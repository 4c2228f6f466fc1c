"""The run store (SPEC §7): runs, their append-only events, idempotency keys and artifacts, in SQLite.

    async with RunStore(".fusionkit/runs.sqlite3") as store:
        run = await store.create_run(new_run_id(), mode="panel", request=body, trace_id=trace)
        await store.transition(run.run_id, "generating")

`records` holds the states, ids and records; `schema` the SQLite schema and its migrations;
`runstore` the RunStore itself; `errors` what it raises. docs/run-store.md tells the whole story.
"""

from server.store.errors import (
    DuplicateRun,
    IdempotencyConflict,
    SchemaTooNew,
    StoreClosed,
    StoreError,
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
    "RunRecord",
    "RunState",
    "RunStore",
    "SchemaTooNew",
    "StoreClosed",
    "StoreError",
    "UnknownArtifact",
    "UnknownRun",
    "is_valid_run_id",
    "new_run_id",
]
