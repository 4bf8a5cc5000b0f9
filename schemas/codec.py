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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import fastavro
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, SchemaRegistryError

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
        _check(self.schema, record, "", self.schema["__named_schemas"])
        out = io.BytesIO()
        if self._registry is not None:
            out.write(_HEADER.pack(0, self._registered_id()))
        try:
            fastavro.schemaless_writer(out, self.schema, record)
        except Exception as exc:  # _check should have caught it; keep the promise of CodecError anyway
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


def _check(schema: Any, value: Any, path: str, named: dict) -> None:
    """Raise CodecError naming the first field of `value` that `schema` rejects.

    fastavro's own validation names types rather than field paths, so this walks the
    (parsed) schema itself; it also rejects unknown fields and naive datetimes, which
    fastavro would silently drop or read as UTC.
    """
    where = f"field {path}" if path else "record"

    def fail(problem: str) -> None:
        raise CodecError(f"{where}: {problem}")

    if isinstance(schema, str) and schema in named:
        schema = named[schema]
    if isinstance(schema, list):
        if value is None and "null" in schema:
            return
        branches = [branch for branch in schema if branch != "null"]
        if len(branches) == 1:
            return _check(branches[0], value, path, named)
        for branch in branches:
            try:
                return _check(branch, value, path, named)
            except CodecError:
                pass
        fail(f"expected {_type_name(schema)}, got {_got(value)}")

    kind = schema["type"] if isinstance(schema, dict) else schema
    logical = schema.get("logicalType") if isinstance(schema, dict) else None

    if logical == "timestamp-millis" and isinstance(value, dt.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            fail("expected a timezone-aware datetime, got a naive one")
    elif kind == "record":
        if not isinstance(value, Mapping):
            fail(f"expected record {schema['name']}, got {_got(value)}")
        fields = {field["name"]: field for field in schema["fields"]}
        for name, field in fields.items():
            child = f"{path}.{name}" if path else name
            if name in value:
                _check(field["type"], value[name], child, named)
            elif "default" not in field:
                raise CodecError(f"field {child}: missing required field")
        if unknown := sorted(str(key) for key in value if key not in fields):
            fail(f"unknown fields {', '.join(unknown)}")
    elif kind == "enum":
        if value not in schema["symbols"]:
            fail(f"expected one of {', '.join(schema['symbols'])}, got {value!r}")
    elif kind == "array":
        if not isinstance(value, (list, tuple)):
            fail(f"expected array, got {_got(value)}")
        for index, item in enumerate(value):
            _check(schema["items"], item, f"{path}[{index}]", named)
    elif kind == "map":
        if not isinstance(value, Mapping):
            fail(f"expected map, got {_got(value)}")
        for key, item in value.items():
            if not isinstance(key, str):
                fail(f"expected string map keys, got {_got(key)}")
            _check(schema["values"], item, f"{path}[{key!r}]", named)
    elif kind in _INT_RANGE:
        # bool is an int in Python but not in Avro.
        if not isinstance(value, int) or isinstance(value, bool):
            expected = "timezone-aware datetime or epoch millis" if logical else kind
            fail(f"expected {expected}, got {_got(value)}")
        low, high = _INT_RANGE[kind]
        if not low <= value <= high:
            fail(f"{value} is out of range for {kind}")
    elif kind in _PYTHON_TYPES:
        if not isinstance(value, _PYTHON_TYPES[kind]) or (isinstance(value, bool) and kind != "boolean"):
            fail(f"expected {kind}, got {_got(value)}")
    else:
        fail(f"unsupported schema type {kind}")
