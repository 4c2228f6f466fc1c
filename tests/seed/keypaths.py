"""Comparing an answer of ours with the seed's: key paths, JSON types and enum values.

    problems = compare(seed_body, our_body, enums, same=("state",))   # [] when ours conforms

A key path is the dotted way to a value (`inspection.candidates[].artifact.hash`); list items
share `[]`, except items that carry an `event_type`, which are grouped by it
(`events[candidate_recorded].payload.candidate.rank`), so each kind of event is held to its own
shape. Ours conforms when every seed key path is present in ours, with the same JSON type
wherever the seed's value is not null (ours may be null only where the seed's is), every enum
value of ours at a seed path is one the seed's types allow, and the `same` paths hold equal
values. Extra keys of ours are additions, and allowed.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

__all__ = ["compare", "shape"]

# Paths whose last key is an enum name but whose values are not that enum.
_NOT_ENUM = re.compile(r"^status$|fusionkit|\.error\.kind$|^choices|^object$")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _walk(value: Any, path: str, out: dict[str, list[Any]]) -> None:
    out[path].append(value)
    if isinstance(value, dict):
        for key, item in value.items():
            _walk(item, f"{path}.{key}" if path else key, out)
    elif isinstance(value, list):
        for item in value:
            group = item.get("event_type") if isinstance(item, dict) else None
            _walk(item, f"{path}[{group}]" if isinstance(group, str) else f"{path}[]", out)


def shape(value: Any) -> dict[str, list[Any]]:
    """Every key path of a JSON value with the values found there (the root is "")."""
    out: dict[str, list[Any]] = defaultdict(list)
    _walk(value, "", out)
    return dict(out)


def _pick(data: Any, path: str) -> Any:
    for part in path.split("."):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data


def compare(seed: Any, ours: Any, enums: dict[str, list[str]], same: tuple[str, ...] = ()) -> list[str]:
    """What keeps `ours` from answering as the seed did; empty when it conforms.

    `enums` maps a key (`state`, `event_type`, ...) to the values the seed allows there (the fixtures'
    manifest lists them, read from the seed's own types).
    """
    problems: list[str] = []
    seed_paths, our_paths = shape(seed), shape(ours)
    for path, seed_values in sorted(seed_paths.items()):
        shown = path or "(the body)"
        if path not in our_paths:
            problems.append(f"{shown}: missing (the seed answers {_kind(seed_values[0])})")
            continue
        seed_kinds = {_kind(v) for v in seed_values} - {"null"}
        our_kinds = {_kind(v) for v in our_paths[path]} - {"null"}
        if seed_kinds and not our_kinds:
            problems.append(f"{shown}: always null in ours, the seed answers {sorted(seed_kinds)}")
        elif seed_kinds and not our_kinds <= seed_kinds:
            problems.append(f"{shown}: ours is {sorted(our_kinds)}, the seed's {sorted(seed_kinds)}")
        key = re.split(r"[.\]]", path)[-1]
        if key in enums and not _NOT_ENUM.search(path):
            odd = sorted({v for v in our_paths[path] if isinstance(v, str) and v not in enums[key]})
            if odd:
                problems.append(f"{shown}: {odd} not among the seed's values {enums[key]}")
    for path in same:
        try:
            expected, got = _pick(seed, path), _pick(ours, path)
        except (KeyError, IndexError, TypeError):
            problems.append(f"{path}: not in ours")
            continue
        if expected != got:
            problems.append(f"{path}: ours {got!r}, the seed {expected!r}")
    return problems
