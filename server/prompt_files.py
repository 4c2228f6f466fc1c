"""The instructions the judge, synthesizer, verifier and agent step are given, as files one can change.

    prompts = load_prompts(config.fusion.prompts, workdir=Path.cwd())   # built-ins, then overrides
    prompts = prompts.overridden(request_options.prompts)               # a request's own texts win
    prompts.judge.text, prompts.judge.sha256, prompts.judge.source

The built-ins ship in the package (`server/prompts/*.md`; `fusionkit prompts dump DIR` writes them
out). Each role's text comes from, highest first: the request's `fusion.prompts` (the text itself:
nothing a client sends becomes a file path), the config's `fusion.prompts` (a file), the working
directory's `.fusionkit/prompts/ROLE.md`, the built-in. A prompt is only the instructions: the
conversation, the fenced candidates and the analysis are always added by the engine.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ROLES",
    "WORKDIR_PROMPTS",
    "Prompt",
    "PromptFileError",
    "PromptOverrides",
    "PromptSet",
    "Role",
    "builtin_text",
    "load_prompts",
    "read_prompt_file",
]

log = logging.getLogger("fusionkit.router")

Role = Literal["judge", "synthesizer", "verifier", "agent"]
ROLES: tuple[Role, ...] = ("judge", "synthesizer", "verifier", "agent")
# Overrides a project keeps beside its work, found relative to the router's working directory.
WORKDIR_PROMPTS = Path(".fusionkit") / "prompts"


class PromptFileError(ValueError):
    """A prompt file that cannot be used: unreadable, not UTF-8, or empty."""


class PromptOverrides(BaseModel):
    """Prompt texts by role (the request's `fusion.prompts`); a role left out keeps its prompt."""

    model_config = ConfigDict(extra="forbid")

    judge: str | None = Field(default=None, min_length=1)
    synthesizer: str | None = Field(default=None, min_length=1)
    verifier: str | None = Field(default=None, min_length=1)
    agent: str | None = Field(default=None, min_length=1)


@dataclass(frozen=True)
class Prompt:
    """One role's instructions and where they came from (`builtin`, `config:PATH`, `workdir:PATH`, `request`)."""

    role: Role
    text: str
    source: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def record(self) -> dict[str, str]:
        """What a run records of it: enough to tell two prompts apart and find the text (an artifact)."""
        return {"role": self.role, "source": self.source, "sha256": self.sha256}


@dataclass(frozen=True)
class PromptSet:
    judge: Prompt
    synthesizer: Prompt
    verifier: Prompt
    agent: Prompt

    def overridden(self, overrides: PromptOverrides | None) -> PromptSet:
        if overrides is None:
            return self
        given = {role: getattr(overrides, role) for role in ROLES if getattr(overrides, role) is not None}
        return replace(self, **{role: Prompt(role, text, "request") for role, text in given.items()})


def builtin_text(role: Role) -> str:
    return resources.files("server").joinpath("prompts", f"{role}.md").read_text(encoding="utf-8")


def read_prompt_file(path: str | Path) -> str:
    """The text of a prompt file, or PromptFileError saying why it cannot be used."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PromptFileError(f"prompt file not found: {path} (a path relative to the working directory)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PromptFileError(f"cannot read the prompt file {path}: {exc}") from None
    if not text.strip():
        raise PromptFileError(f"the prompt file {path} is empty")
    return text


def load_prompts(configured: dict[Role, str | None], workdir: Path) -> PromptSet:
    """Every role's prompt: the config's file, else `.fusionkit/prompts/ROLE.md` under `workdir`, else the built-in.

    Raises PromptFileError naming the file (the config is checked when it is loaded, so only a file
    that changed since can fail here).
    """
    chosen: dict[Role, Prompt] = {}
    local = workdir / WORKDIR_PROMPTS
    for role in ROLES:
        path = configured.get(role)
        if path is not None:
            chosen[role] = Prompt(role, read_prompt_file(path), f"config:{path}")
        elif (local / f"{role}.md").is_file():
            chosen[role] = Prompt(role, read_prompt_file(local / f"{role}.md"), f"workdir:{WORKDIR_PROMPTS}/{role}.md")
        else:
            chosen[role] = Prompt(role, builtin_text(role), "builtin")
    if local.is_dir():
        strays = sorted(p.name for p in local.glob("*.md") if p.stem not in ROLES)
        if strays:
            # A misspelt override would otherwise be ignored without a word.
            log.warning("%s: ignored %s (prompt files are named %s)", local, ", ".join(strays), _names())
    return PromptSet(**chosen)


def _names() -> str:
    return ", ".join(f"{role}.md" for role in ROLES)
