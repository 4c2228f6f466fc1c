"""JSON the offline mock writes when a request asks for it: an object for `json_object`, and for
`json_schema` an instance of the schema with placeholder values, so every structured-output mode
of a client (`parse()`, LangChain's `with_structured_output`, instructor, pydantic-ai, the Agents
SDK's `output_type`, the AI SDK's `generateObject`) works against the demo.

    instance({"type": "object", "properties": {"n": {"type": "integer", "minimum": 3}}}, "text")
    # -> {"n": 3}
"""

from __future__ import annotations

from typing import Any

__all__ = ["instance"]

# A schema nested deeper than this is not followed further: the mock answers, it does not loop.
_MAX_DEPTH = 32
_TEXT_FIELDS = ("answer", "content", "text", "response", "result", "summary", "reply", "message", "output")


def instance(schema: Any, text: str) -> Any:
    """A value that validates against `schema`; string fields named like an answer carry `text`."""
    return _value(schema, schema if isinstance(schema, dict) else {}, text, "", 0)


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if not isinstance(ref, str) or not ref.startswith("#/"):
        return schema
    node: Any = root
    for part in ref[2:].split("/"):
        node = node.get(part) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else {}


def _value(schema: Any, root: dict[str, Any], text: str, name: str, depth: int) -> Any:
    if not isinstance(schema, dict) or depth > _MAX_DEPTH:
        return None
    schema = _resolve(schema, root)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            # The first option that is not null: a placeholder should say something.
            chosen = next((o for o in options if isinstance(o, dict) and o.get("type") != "null"), options[0])
            if key == "allOf":
                merged: dict[str, Any] = {}
                for part in options:
                    merged.update(_resolve(part, root) if isinstance(part, dict) else {})
                chosen = merged
            return _value(chosen, root, text, name, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else ("array" if "items" in schema else "string")
    if kind == "object":
        properties = schema.get("properties") or {}
        return {key: _value(sub, root, text, key, depth + 1) for key, sub in properties.items()}
    if kind == "array":
        count = max(int(schema.get("minItems", 1)), 1) if schema.get("maxItems", 1) != 0 else 0
        return [_value(schema.get("items", {}), root, text, name, depth + 1) for _ in range(count)]
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        value = low + 1 if "exclusiveMinimum" in schema else low
        high = schema.get("maximum")
        value = min(value, high) if high is not None else value
        return int(value) if kind == "integer" else float(value)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _string(schema, text, name)


def _string(schema: dict[str, Any], text: str, name: str) -> str:
    formats = {
        "date": "2026-01-01",
        "date-time": "2026-01-01T00:00:00Z",
        "email": "mock@example.com",
        "uri": "https://example.com",
    }
    value = formats.get(str(schema.get("format")))
    if value is None:
        value = text if name.lower() in _TEXT_FIELDS or not name else f"{name} (offline mock)"
    min_length = int(schema.get("minLength", 0))
    value = value.ljust(min_length, ".")
    max_length = schema.get("maxLength")
    return value[: int(max_length)] if max_length is not None else value
