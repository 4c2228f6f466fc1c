"""Commands for a run that another router executes: a cancel or a tool result, carried by the shared store.

    relay = store.relay                        # None where the store cannot carry them (SQLite)
    relay.serve(handle)                        # this router answers commands for the runs it owns
    reply = await relay.send(record.owner_id, Command("cancel", run_id), within_s=5)

A router that gets a cancel or a tool result for a run it does not execute sends it to the run's
owner (the router holding the run's lease) and answers with the owner's reply. The PostgreSQL store
carries them with LISTEN/NOTIFY (server.store.pgstore).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

__all__ = ["Command", "CommandHandler", "CommandRelay", "OwnerGone", "OwnerSilent", "Reply"]

CommandKind = Literal["cancel", "tool_result"]


@dataclass(frozen=True, slots=True)
class Command:
    """What one router asks of the router executing `run_id`."""

    kind: CommandKind
    run_id: str
    body: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Reply:
    """The owner's answer: `status` 200 and what it did, or the API error (`{"error": {...}}`) it raised."""

    status: int
    body: dict[str, Any] = field(default_factory=dict)


CommandHandler = Callable[[Command], Awaitable[Reply]]


class OwnerGone(Exception):
    """No router holds a live lease for the run: nobody executes it (its runs are expired soon)."""

    def __init__(self, owner_id: str) -> None:
        super().__init__(f"the router that executed it ({owner_id}) holds no live lease")
        self.owner_id = owner_id


class OwnerSilent(Exception):
    """The owner holds a live lease but did not answer in time."""

    def __init__(self, owner_id: str, within_s: float) -> None:
        super().__init__(f"the router executing it ({owner_id}) did not answer within {within_s:g} s")
        self.owner_id = owner_id


class CommandRelay(Protocol):
    """Carries commands between the routers sharing one store."""

    def serve(self, handler: CommandHandler) -> None:
        """Answer the commands sent to this store's owner id with `handler`, from now on."""

    async def send(self, owner_id: str, command: Command, within_s: float) -> Reply:
        """Have the router `owner_id` carry out `command`; its reply. Raises OwnerGone, OwnerSilent."""
        ...
