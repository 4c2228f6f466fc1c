"""Reading a panel config file: YAML, `${VAR}` expansion, and errors a person can act on.

config = load_config("configs/demo.yaml")   # -> server.config.PanelConfig
# or raises ConfigError whose lines read
# configs/bad.yaml: endpoints[2].provider: found 'opneai'; allowed: openai, anthropic, ...
"""

from __future__ import annotations

import os
import re
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from bridge.errors import describe_validation_error
from server.config import ConfigReferenceError, PanelConfig

__all__ = ["ConfigError", "expand_env", "load_config"]

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """A config that cannot be used; `problems` holds one line per problem."""

    def __init__(self, path: str | Path, problems: list[str]) -> None:
        self.path = str(path)
        self.problems = problems
        super().__init__("\n".join(f"{self.path}: {p}" for p in problems))


def load_config(path: str | Path, environ: typing.Mapping[str, str] | None = None) -> PanelConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, ["file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, [f"cannot read the file: {exc}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(path, [f"{where}not valid YAML ({getattr(exc, 'problem', exc)})"]) from None
    if not isinstance(data, dict):
        raise ConfigError(
            path, [f"the top level must be a mapping with an 'endpoints' list; found {type(data).__name__}"]
        )
    problems: list[str] = []
    data = expand_env(data, os.environ if environ is None else environ, "", problems)
    if problems:
        raise ConfigError(path, problems)
    try:
        return PanelConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(path, _describe(exc, data)) from None


def expand_env(value: Any, environ: typing.Mapping[str, str], at: str, problems: list[str]) -> Any:
    """Expand `${VAR}` and `${VAR:-default}` in every string; unset variables are reported by key path."""
    if isinstance(value, dict):
        return {k: expand_env(v, environ, f"{at}.{k}" if at else str(k), problems) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, environ, f"{at}[{i}]", problems) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        problems.append(f"{at}: environment variable {name} is not set (use ${{{name}:-default}} for a default)")
        return ""

    expanded = _VAR.sub(substitute, value)
    # A whole-value reference may stand for a number or a bool ("port: ${PORT:-9100}").
    if expanded != value and _VAR.fullmatch(value):
        return yaml.safe_load(expanded) if expanded.strip() else expanded
    return expanded


def _found(data: Any, loc: tuple[int | str, ...]) -> Any:
    node = data
    for part in loc:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def _shown(found: Any, limit: int = 80) -> str:
    """`found` as the error shows it: its repr, cut short (a 300-character id would drown the message), and
    without the password of a URL (`server.run_store: postgresql://user:secret@db/x`)."""
    # Imported here, on the error path only: a bridge reads its config too and never opens a run store.
    from server.store.opening import redact_text

    text = redact_text(repr(found))
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The pydantic model whose fields live at `loc` (for listing allowed keys)."""
    model: Any = PanelConfig
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            return None
        annotation = field.annotation
        candidates = [annotation, *typing.get_args(annotation)]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if model is None:
            for arg in typing.get_args(annotation):
                inner = [a for a in typing.get_args(arg) if isinstance(a, type) and issubclass(a, BaseModel)]
                if inner:
                    model = inner[0]
        if model is None:
            return None
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _describe(exc: ValidationError, data: dict[str, Any]) -> list[str]:
    lines = []
    for problem in describe_validation_error(exc.errors(), data).problems:
        if isinstance(problem.cause, ConfigReferenceError):
            lines.append(str(problem.cause))
            continue
        key = problem.path or "(top level)"
        found = _shown(_found(data, problem.loc))
        if problem.type == "extra_forbidden":
            parent = _model_at(problem.loc[:-1])
            allowed = ", ".join(parent.model_fields) if parent else "see docs/configuration.md"
            lines.append(f"{key}: unknown key; allowed keys here: {allowed}")
        elif problem.type == "missing":
            lines.append(f"{key}: required key is missing")
        elif problem.type == "literal_error":
            lines.append(f"{key}: found {found}; allowed: {problem.context.get('expected', '')}")
        else:
            lines.append(f"{key}: found {found}; {problem.message}")
    return lines
