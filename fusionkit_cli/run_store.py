"""Which run store a command uses, and what it was told: a store that cannot be used is the user's to fix.

    chosen = choose_store(config_path, store_flag)      # --store, else FUSIONKIT_RUN_STORE, else the config's
    store = open_chosen(chosen)                         # BadInput (exit 2) naming who chose it, if it cannot hold runs

`fusionkit serve`, `fusionkit runs` and `fusionkit runs rejudge` all choose this way, so each error
names the flag, the variable or the config key that gave the location (`FUSIONKIT_RUN_STORE: found
'postgresql://fk@db:x/fk'; allowed: ...`), never with a password.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import click

from fusionkit_cli.common import BadInput, load_config_or_exit
from server.config import run_store_location
from server.store import RUN_STORE_ENV, RunStoreAPI, StoreError, open_store, store_location
from server.store.opening import is_postgres_url, redact_url

__all__ = ["DEFAULT_STORE", "ChosenStore", "choose_store", "open_chosen", "require_existing"]

DEFAULT_STORE = ".fusionkit/runs.sqlite3"


@dataclass(frozen=True)
class ChosenStore:
    """A run store's location and who gave it (`--store`, `FUSIONKIT_RUN_STORE`, `panel.yaml: server.run_store`)."""

    location: str
    given_by: str

    def refused(self, exc: Exception) -> BadInput:
        """`exc` (raised opening the store) as the CLI's error, naming who gave the location."""
        return BadInput(f"{self.given_by}: {exc}")

    @property
    def shown(self) -> str:
        return redact_url(self.location)


def choose_store(config_path: str | None, store: str | None) -> ChosenStore:
    """The store to use: `store` (--store), else FUSIONKIT_RUN_STORE, else the config's server.run_store,
    else the default; a malformed location is refused (exit 2) naming where it came from."""
    if store:
        try:
            return ChosenStore(run_store_location(store), "--store")
        except ValueError as exc:
            raise BadInput(f"--store: found {redact_url(store)!r}; allowed: {exc}") from None
    configured = load_config_or_exit(config_path).server.run_store if config_path else DEFAULT_STORE
    try:
        location = store_location(configured)
    except StoreError as exc:
        raise BadInput(str(exc)) from None
    if os.environ.get(RUN_STORE_ENV):
        return ChosenStore(location, RUN_STORE_ENV)
    return ChosenStore(location, f"{config_path}: server.run_store" if config_path else "the default run store")


def require_existing(chosen: ChosenStore) -> None:
    """A command that reads runs refuses a SQLite file that is not there (opening would make an empty one)."""
    if not is_postgres_url(chosen.location) and not Path(chosen.location).exists():
        raise BadInput(
            f"{chosen.given_by}: {chosen.location}: no run store here (give --store PATH, --config FILE or --url URL)"
        )


def open_chosen(chosen: ChosenStore) -> RunStoreAPI:
    """Open an existing store to read or prune; exit 2 when it cannot hold runs, 1 when it cannot be reached now."""
    require_existing(chosen)
    try:
        opened = open_store(chosen.location)
    except StoreError as exc:  # a malformed URL, a schema from a newer fusionkit, a path where no file can be
        raise chosen.refused(exc) from None
    if opened.unavailable:
        raise click.ClickException(f"{chosen.shown}: the run store cannot be used: {opened.health().error}")
    return opened
