"""Checks a record against its Avro schema before it is written, naming the first field it rejects.

fastavro's own validation names types rather than field paths, so we build our own; it also
rejects unknown fields and naive datetimes, which fastavro would silently drop or read as UTC.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

_INT_RANGE = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
_PYTHON_TYPES = {
    "null": type(None),
    "boolean": bool,
    "string": str,
    "bytes": (bytes, bytearray),
    "float": (int, float),
    "double": (int, float),
}


def _type_name(schema: Any) -> str:
    if isinstance(schema, list):
        return " or ".join(_type_name(branch) for branch in schema)
    if isinstance(schema, dict):
        return schema.get("logicalType") or schema.get("name") or schema["type"]
    return schema


def _got(value: Any) -> str:
    return "null" if value is None else type(value).__name__


class Invalid(Exception):
    """Raised by a validator; `segments` is the path to the rejected value, innermost first."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        self.segments: list[str] = []

    def reason(self) -> str:
        path = "".join(reversed(self.segments)).lstrip(".")
        return f"{'field ' + path if path else 'record'}: {self.problem}"


def _compile(schema: Any, named: dict) -> Callable[[Any], None]:
    """A validator for `schema` that raises Invalid naming the first field it rejects."""
    if isinstance(schema, str) and schema in named:
        schema = named[schema]
    if isinstance(schema, list):
        return _compile_union(schema, named)
    kind = schema["type"] if isinstance(schema, dict) else schema
    logical = schema.get("logicalType") if isinstance(schema, dict) else None
    if kind == "record":
        return _compile_record(schema, named)
    if kind == "enum":
        symbols, listed = frozenset(schema["symbols"]), ", ".join(schema["symbols"])

        def check_enum(value):
            if not isinstance(value, str) or value not in symbols:
                raise Invalid(f"expected one of {listed}, got {value!r}")
        return check_enum
    if kind == "array":
        item_check = _compile(schema["items"], named)

        def check_array(value):
            if not isinstance(value, (list, tuple)):
                raise Invalid(f"expected array, got {_got(value)}")
            for index, item in enumerate(value):
                try:
                    item_check(item)
                except Invalid as invalid:
                    invalid.segments.append(f"[{index}]")
                    raise
        return check_array
    if kind == "map":
        value_check = _compile(schema["values"], named)

        def check_map(value):
            if not isinstance(value, Mapping):
                raise Invalid(f"expected map, got {_got(value)}")
            for key, item in value.items():
                if not isinstance(key, str):
                    raise Invalid(f"expected string map keys, got {_got(key)}")
                try:
                    value_check(item)
                except Invalid as invalid:
                    invalid.segments.append(f"[{key!r}]")
                    raise
        return check_map
    if kind in _INT_RANGE:
        low, high = _INT_RANGE[kind]
        expected = "timezone-aware datetime or epoch millis" if logical else kind
        timestamp = logical == "timestamp-millis"

        def check_int(value):
            if timestamp and isinstance(value, dt.datetime):
                if value.tzinfo is None or value.utcoffset() is None:
                    raise Invalid("expected a timezone-aware datetime, got a naive one")
                return
            # bool is an int in Python but not in Avro.
            if not isinstance(value, int) or isinstance(value, bool):
                raise Invalid(f"expected {expected}, got {_got(value)}")
            if not low <= value <= high:
                raise Invalid(f"{value} is out of range for {kind}")
        return check_int
    if kind in _PYTHON_TYPES:
        python_type, is_boolean = _PYTHON_TYPES[kind], kind == "boolean"

        def check_primitive(value):
            if not isinstance(value, python_type) or (isinstance(value, bool) and not is_boolean):
                raise Invalid(f"expected {kind}, got {_got(value)}")
        return check_primitive
    raise ValueError(f"unsupported schema type {kind}")


def _compile_union(schema: list, named: dict) -> Callable[[Any], None]:
    nullable = "null" in schema
    branches = [_compile(branch, named) for branch in schema if branch != "null"]
    expected = _type_name(schema)

    def check_union(value):
        if value is None and nullable:
            return
        if len(branches) == 1:
            return branches[0](value)
        for branch in branches:
            try:
                return branch(value)
            except Invalid:
                pass
        raise Invalid(f"expected {expected}, got {_got(value)}")
    return check_union


def _compile_record(schema: dict, named: dict) -> Callable[[Any], None]:
    fields = [(field["name"], f".{field['name']}", "default" in field, _compile(field["type"], named))
              for field in schema["fields"]]
    names = frozenset(name for name, _, _, _ in fields)

    def check_record(value):
        if not isinstance(value, Mapping):
            raise Invalid(f"expected record {schema['name']}, got {_got(value)}")
        for name, segment, has_default, check in fields:
            if name in value:
                try:
                    check(value[name])
                except Invalid as invalid:
                    invalid.segments.append(segment)
                    raise
            elif not has_default:
                invalid = Invalid("missing required field")
                invalid.segments.append(segment)
                raise invalid
        if len(value) > len(names) or not names.issuperset(value):
            unknown = sorted(str(key) for key in value if key not in names)
            raise Invalid(f"unknown fields {', '.join(unknown)}")
    return check_record


_VALIDATORS: dict[int, Callable[[Any], None]] = {}


def validator(schema: dict) -> Callable[[Any], None]:
    """The validator of a parsed schema, built once: the flows validate every record they write."""
    if id(schema) not in _VALIDATORS:
        _VALIDATORS[id(schema)] = _compile(schema, schema["__named_schemas"])
    return _VALIDATORS[id(schema)]
