"""A JSON Schema of an Avro record as its JSON form is written (timestamps as ISO-8601 text), for
API documents: one description of a record, the .avsc file, and this view of it."""

from __future__ import annotations

import json
from pathlib import Path

_SCHEMA_DIR = Path(__file__).parent
PRIMITIVES = {"string": {"type": "string"}, "boolean": {"type": "boolean"}, "int": {"type": "integer"},
              "long": {"type": "integer"}, "float": {"type": "number"}, "double": {"type": "number"}}


def json_schema(name: str, optional: set[str] = frozenset()) -> dict:
    """The record's JSON Schema; `optional` names dotted fields ("metadata.created_at") that the
    API fills in, so a caller may leave them out although Avro has no default for them."""
    return _convert(json.loads((_SCHEMA_DIR / f"{name}.avsc").read_text()), optional, "")


def _convert(kind, optional: set[str], path: str) -> dict:
    if isinstance(kind, list):  # a union: ["null", X] is an optional X
        return {"anyOf": [_convert(branch, optional, path) for branch in kind]}
    if isinstance(kind, str):
        return {"type": "null"} if kind == "null" else dict(PRIMITIVES[kind])
    if kind.get("logicalType") == "timestamp-millis":
        return {"type": "string", "format": "date-time"}
    if kind["type"] == "enum":
        return {"enum": list(kind["symbols"])}
    if kind["type"] == "array":
        return {"type": "array", "items": _convert(kind["items"], optional, path)}
    if kind["type"] == "map":
        return {"type": "object", "additionalProperties": _convert(kind["values"], optional, path)}
    if kind["type"] == "record":
        properties, required = {}, []
        for field in kind["fields"]:
            dotted = f"{path}{field['name']}"
            properties[field["name"]] = _convert(field["type"], optional, f"{dotted}.")
            if "doc" in field:
                properties[field["name"]]["description"] = field["doc"]
            if "default" not in field and dotted not in optional:
                required.append(field["name"])
        return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}
    return _convert(kind["type"], optional, path)
