"""The notes a door attaches to its answer (`fusionkit.door`): which door, and what of the request it did
not pass to the panel, and why."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from server.engine import FusionResult
from server.metadata import fusion_metadata

__all__ = ["DoorNotes"]


class DoorNotes(BaseModel):
    """The `fusionkit.door` object: which door, and what of the request the panel did not get, and why."""

    name: str
    tools_not_offered: list[str] = Field(default_factory=list)
    dropped: list[str] = Field(default_factory=list)

    def metadata(self, result: FusionResult) -> dict[str, Any]:
        """The answer's `fusionkit` object: the run's metadata and this door's notes."""
        return {**fusion_metadata(result).model_dump(), "door": self.model_dump()}

    def drop(self, what: str) -> None:
        if what not in self.dropped:
            self.dropped.append(what)
