"""Avro encoding for notifyflow events, as plain Avro or in the Confluent wire format.

Every failure caused by the data itself (an invalid record, bytes that are not a valid
message) raises CodecError, so a stage can dead-letter the message and move on. Registry
outages are not the message's fault: those errors propagate so the stage retries instead.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import json
import struct
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import fastavro
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, SchemaRegistryError

from schemas.writer import Unusual, compile_writer

SCHEMA_NAMES = (
    "NotificationRequested",
    "PreferencesUpdated",
    "DeviceRegistered",
    "PresenceChanged",
    "DeliveryStatus",
    "EngagementEvent",
    "DeadLetter",
    "DeliveryJob",
)

_SCHEMA_DIR = Path(__file__).parent
# Confluent wire format: magic byte 0, then the registry's schema id as a big-endian uint32.
_HEADER = struct.Struct(">BI")
_INT_RANGE = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
_PYTHON_TYPES = {
    "null": type(None),
    "boolean": bool,
    "string": str,
    "bytes": (bytes, bytearray),
    "float": (int, float),
    "double": (int, float),
}


class CodecError(ValueError):
    """A record or a message that cannot be encoded or decoded; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _schema_text(name: str) -> str:
    if name not in SCHEMA_NAMES:
        raise ValueError(f"unknown schema {name!r}; expected one of {', '.join(SCHEMA_NAMES)}")
    return (_SCHEMA_DIR / f"{name}.avsc").read_text()


@functools.cache
def load_schema(name: str) -> dict:
    """The parsed schema, shared between callers: do not mutate it."""
    return fastavro.parse_schema(json.loads(_schema_text(name)))


class AvroCodec:
    """Encodes and decodes one event type.

    Plain Avro without a registry. With a `confluent_kafka.schema_registry.SchemaRegistryClient`
    and a topic, the Confluent wire format, registering under `<topic>-value` on first encode.
    """

    def __init__(
        self, schema_name: str, *, registry: SchemaRegistryClient | None = None, topic: str | None = None
    ) -> None:
        if registry is not None and not topic:
            raise ValueError("a registry needs a topic: the subject is <topic>-value")
        self.schema_name = schema_name
        self.schema = load_schema(schema_name)
        self._registry = registry
        self._subject = f"{topic}-value"  # TopicNameStrategy
        self._schema_id: int | None = None
        self._writer_schemas: dict[int, dict] = {}

    def encode(self, record: Mapping[str, Any]) -> bytes:
        header = _HEADER.pack(0, self._registered_id()) if self._registry is not None else b""
        write = _fast_writer(self.schema_name)
        try:
            return header + write(record)
        except Exception:  # anything the generated writer does not take as it is: the checked path decides
            return header + self._checked_write(record)

    def _checked_write(self, record: Mapping[str, Any]) -> bytes:
        try:
            _validator(self.schema_name)(record)
        except _Invalid as invalid:
            raise CodecError(invalid.reason()) from None
        out = io.BytesIO()
        try:
            fastavro.schemaless_writer(out, self.schema, record)
        except Exception as exc:  # the validator should have caught it; keep the promise of CodecError anyway
            raise CodecError(f"cannot encode {self.schema_name}: {exc}") from exc
        return out.getvalue()

    def decode(self, data: bytes) -> dict:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise CodecError(f"expected bytes, got {type(data).__name__}")
        data = bytes(data)
        writer, reader = self.schema, None
        if self._registry is not None:
            if data[:1] != b"\x00":
                raise CodecError(
                    f"not Confluent framing: magic byte 0x{data[0]:02x}" if data else "empty message"
                )
            if len(data) < _HEADER.size:
                raise CodecError(f"truncated Confluent header: {len(data)} of {_HEADER.size} bytes")
            _, schema_id = _HEADER.unpack_from(data)
            writer, reader = self._writer_schema(schema_id), self.schema
            data = data[_HEADER.size :]
        body = io.BytesIO(data)
        try:
            record = fastavro.schemaless_reader(body, writer, reader)
        except EOFError as exc:
            raise CodecError("truncated Avro payload") from exc
        except IndexError as exc:
            # fastavro's compiled varint reader raises IndexError, not EOFError, when input runs out.
            if body.tell() >= len(data):
                raise CodecError("truncated Avro payload") from exc
            raise CodecError(f"malformed {self.schema_name}: union branch or enum symbol out of range") from exc
        except UnicodeDecodeError as exc:
            raise CodecError(f"invalid UTF-8 in string: {exc.reason}") from exc
        except Exception as exc:  # arbitrary bytes reach many failure modes inside fastavro
            raise CodecError(f"malformed {self.schema_name}: {type(exc).__name__}: {exc}") from exc
        # schemaless_reader stops after one record; leftovers mean a different schema or corruption.
        if left := len(data) - body.tell():
            raise CodecError(f"{left} trailing bytes after the Avro record")
        return record

    def _registered_id(self) -> int:
        if self._schema_id is None:
            schema = Schema(_schema_text(self.schema_name), "AVRO")
            self._schema_id = self._registry.register_schema(self._subject, schema)
        return self._schema_id

    def _writer_schema(self, schema_id: int) -> dict:
        if schema_id not in self._writer_schemas:
            try:
                found = self._registry.get_schema(schema_id)
            except SchemaRegistryError as exc:
                if exc.http_status_code == 404:
                    raise CodecError(f"unknown schema id {schema_id}") from exc
                raise
            if (found.schema_type or "AVRO") != "AVRO":
                raise CodecError(f"schema id {schema_id} is {found.schema_type}, not Avro")
            try:
                self._writer_schemas[schema_id] = fastavro.parse_schema(json.loads(found.schema_str))
            except Exception as exc:
                raise CodecError(f"schema id {schema_id} is not a usable Avro schema: {exc}") from exc
        return self._writer_schemas[schema_id]


def _type_name(schema: Any) -> str:
    if isinstance(schema, list):
        return " or ".join(_type_name(branch) for branch in schema)
    if isinstance(schema, dict):
        return schema.get("logicalType") or schema.get("name") or schema["type"]
    return schema


def _got(value: Any) -> str:
    return "null" if value is None else type(value).__name__


class _Invalid(Exception):
    """Raised inside a compiled validator; `segments` is the path, innermost first."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        self.segments: list[str] = []

    def reason(self) -> str:
        path = "".join(reversed(self.segments)).lstrip(".")
        return f"{'field ' + path if path else 'record'}: {self.problem}"


def _compile(schema: Any, named: dict) -> Callable[[Any], None]:
    """A validator for `schema` that raises _Invalid naming the first field it rejects.

    fastavro's own validation names types rather than field paths, so we build our own; it
    also rejects unknown fields and naive datetimes, which fastavro would silently drop or
    read as UTC. Built once per schema: the flows validate every record they write.
    """
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
                raise _Invalid(f"expected one of {listed}, got {value!r}")
        return check_enum
    if kind == "array":
        item_check = _compile(schema["items"], named)

        def check_array(value):
            if not isinstance(value, (list, tuple)):
                raise _Invalid(f"expected array, got {_got(value)}")
            for index, item in enumerate(value):
                try:
                    item_check(item)
                except _Invalid as invalid:
                    invalid.segments.append(f"[{index}]")
                    raise
        return check_array
    if kind == "map":
        value_check = _compile(schema["values"], named)

        def check_map(value):
            if not isinstance(value, Mapping):
                raise _Invalid(f"expected map, got {_got(value)}")
            for key, item in value.items():
                if not isinstance(key, str):
                    raise _Invalid(f"expected string map keys, got {_got(key)}")
                try:
                    value_check(item)
                except _Invalid as invalid:
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
                    raise _Invalid("expected a timezone-aware datetime, got a naive one")
                return
            # bool is an int in Python but not in Avro.
            if not isinstance(value, int) or isinstance(value, bool):
                raise _Invalid(f"expected {expected}, got {_got(value)}")
            if not low <= value <= high:
                raise _Invalid(f"{value} is out of range for {kind}")
        return check_int
    if kind in _PYTHON_TYPES:
        python_type, is_boolean = _PYTHON_TYPES[kind], kind == "boolean"

        def check_primitive(value):
            if not isinstance(value, python_type) or (isinstance(value, bool) and not is_boolean):
                raise _Invalid(f"expected {kind}, got {_got(value)}")
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
            except _Invalid:
                pass
        raise _Invalid(f"expected {expected}, got {_got(value)}")
    return check_union


def _compile_record(schema: dict, named: dict) -> Callable[[Any], None]:
    fields = [(field["name"], f".{field['name']}", "default" in field, _compile(field["type"], named))
              for field in schema["fields"]]
    names = frozenset(name for name, _, _, _ in fields)

    def check_record(value):
        if not isinstance(value, Mapping):
            raise _Invalid(f"expected record {schema['name']}, got {_got(value)}")
        for name, segment, has_default, check in fields:
            if name in value:
                try:
                    check(value[name])
                except _Invalid as invalid:
                    invalid.segments.append(segment)
                    raise
            elif not has_default:
                invalid = _Invalid("missing required field")
                invalid.segments.append(segment)
                raise invalid
        if len(value) > len(names) or not names.issuperset(value):
            unknown = sorted(str(key) for key in value if key not in names)
            raise _Invalid(f"unknown fields {', '.join(unknown)}")
    return check_record


@functools.cache
def _fast_writer(name: str) -> Callable[[Any], bytes]:
    try:
        return compile_writer(load_schema(name))
    except NotImplementedError:
        return _always_unusual


def _always_unusual(record: Any) -> bytes:
    raise Unusual("no generated writer for this schema")


@functools.cache
def _validator(name: str) -> Callable[[Any], None]:
    schema = load_schema(name)
    return _compile(schema, schema["__named_schemas"])
