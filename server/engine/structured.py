"""Structured output: what "an answer in the form the client asked" means, checked with `jsonschema`.

    schema = AnswerSchema.of(request)          # None when the client asked for no JSON
    problem = schema.problem(text)             # None when `text` is a JSON object that satisfies the schema

`json_object` asks for one JSON object; `json_schema` for one that validates against the schema
(JSON Schema as the client wrote it, its own `$schema` deciding the draft, 2020-12 otherwise).
The engine holds every answer to it: candidates that fail are marked and not chosen while a
valid one exists, the synthesizer's answer is repaired once when it fails, else the best valid
candidate is the answer, and a run with none fails with `schema_unsatisfied`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import jsonschema
from jsonschema.exceptions import SchemaError

from bridge.errors import bad_request
from bridge.protocol import ChatRequest

__all__ = ["AnswerSchema"]


@dataclass(frozen=True)
class AnswerSchema:
    name: str
    schema: dict[str, Any] | None  # None: any JSON object (json_object)
    validator: Any = None

    @classmethod
    def of(cls, request: ChatRequest) -> AnswerSchema | None:
        """The form the request's `response_format` asks for; a schema that is not one is the client's 400."""
        form = request.response_format
        if form is None or form.type == "text":
            return None
        if form.type == "json_object":
            return cls("json_object", None)
        spec = form.json_schema or {}
        schema = spec.get("schema")
        if not isinstance(schema, dict):
            raise bad_request(
                "response_format.json_schema.schema must be a JSON Schema object",
                param="response_format.json_schema.schema",
            )
        try:
            validator_class = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
            validator_class.check_schema(schema)
        except SchemaError as exc:
            raise bad_request(
                f"response_format.json_schema.schema is not a valid JSON Schema: {exc.message}",
                param="response_format.json_schema.schema",
            ) from None
        return cls(str(spec.get("name") or "schema"), schema, validator_class(schema))

    def problem(self, text: str) -> str | None:
        """Why `text` is not an answer of this form, or None when it is."""
        try:
            value = json.loads(text)
        except (json.JSONDecodeError, TypeError) as exc:
            return f"not valid JSON ({exc})"
        if not isinstance(value, dict):
            return f"a JSON {type(value).__name__}, not the object asked for"
        if self.validator is None:
            return None
        error = jsonschema.exceptions.best_match(self.validator.iter_errors(value))
        if error is None:
            return None
        where = "/".join(str(p) for p in error.absolute_path) or "(the top level)"
        return f"does not match the schema '{self.name}' at {where}: {error.message}"
