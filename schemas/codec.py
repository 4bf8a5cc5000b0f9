"""Avro encoding for notifyflow events, as plain Avro or in the Confluent wire format.

Every failure caused by the data itself (an invalid record, bytes that are not a valid
message) raises CodecError, so a stage can dead-letter the message and move on. Registry
outages are not the message's fault: those errors propagate so the stage retries instead.
"""

from __future__ import annotations

import functools
import io
import json
import struct
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import fastavro
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, SchemaRegistryError

from schemas.reader import compile_reader
from schemas.validator import Invalid, validator
from schemas.writer import Unusual, compile_writer, millis

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
        self.field_names = tuple(field["name"] for field in self.schema["fields"])
        self._registry = registry
        self._subject = f"{topic}-value"  # TopicNameStrategy
        self._schema_id: int | None = None
        self._writer_schemas: dict[int, dict] = {}
        self._current_ids: dict[int, bool] = {}  # registry ids: written with this very schema?

    def encode(self, record: Mapping[str, Any]) -> bytes:
        header = _HEADER.pack(0, self._registered_id()) if self._registry is not None else b""
        write = _fast_writer(self.schema_name)
        try:
            return header + write(record)
        except Exception:  # anything the generated writer does not take as it is: the checked path decides
            return header + self._checked_write(record)

    def _checked_write(self, record: Mapping[str, Any]) -> bytes:
        try:
            validator(load_schema(self.schema_name))(record)
        except Invalid as invalid:
            raise CodecError(invalid.reason()) from None
        out = io.BytesIO()
        try:
            fastavro.schemaless_writer(out, self.schema, record)
        except Exception as exc:  # the validator should have caught it; keep the promise of CodecError anyway
            raise CodecError(f"cannot encode {self.schema_name}: {exc}") from exc
        return out.getvalue()

    def decode(self, data: bytes) -> dict:
        """Records written with the current schema take the generated reader (schemas/reader.py), the rest
        the checked path, which also gives the reason a message cannot be read."""
        try:
            return _fast_datetime_reader(self.schema_name)(self._current_body(data))
        except Exception:  # anything the generated reader does not take as it is: the checked path decides
            return self._checked_read(data)

    def _checked_read(self, data: bytes) -> dict:
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
        try:
            return _read(data, writer, reader, self.schema_name)
        except CodecError as error:
            if self._registry is not None:
                raise
            # Plain Avro names no writer schema: a record written before fields were added is read
            # with the version it was written with, into today's shape (the new fields' defaults).
            for older in history(self.schema_name):
                try:
                    return _read(data, older, self.schema, self.schema_name)
                except CodecError:
                    continue
            raise error

    def decode_values(self, data: bytes) -> tuple:
        """decode()'s field values in the order of `field_names` (today's schema), with timestamps as int
        milliseconds since the epoch instead of datetimes: for readers of every field of many records
        (analytics rows). Records written with the current schema take the generated reader
        (schemas/reader.py), the rest the checked path."""
        try:
            return _fast_values_reader(self.schema_name)(self._current_body(data))
        except Exception:  # anything the generated reader does not take as it is: the checked path decides
            record = as_millis(self._checked_read(data))
            return tuple(record[name] for name in self.field_names)

    def _current_body(self, data: bytes) -> bytes:
        """The Avro body of a message written with the current schema; raises Unusual for any other."""
        if data.__class__ is not bytes:
            raise Unusual("not bytes")
        if self._registry is None:
            return data
        if data[:1] != b"\x00" or len(data) < _HEADER.size:
            raise Unusual("not Confluent framing")
        _, schema_id = _HEADER.unpack_from(data)
        if schema_id not in self._current_ids:
            self._current_ids[schema_id] = self._writer_schema(schema_id) == self.schema
        if not self._current_ids[schema_id]:
            raise Unusual("written with another version of the schema")
        return data[_HEADER.size :]

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


def _always_unusual(value: Any) -> Any:
    raise Unusual("no generated writer or reader for this schema")


def _generated(compile_code: Callable[[dict], Callable]) -> Callable[[str], Callable]:
    """Code generated once per schema name; a schema it cannot generate always takes the checked path."""

    @functools.cache
    def generated(name: str) -> Callable:
        try:
            return compile_code(load_schema(name))
        except NotImplementedError:
            return _always_unusual

    return generated


_fast_writer = _generated(compile_writer)
_fast_values_reader = _generated(functools.partial(compile_reader, values=True))
_fast_datetime_reader = _generated(functools.partial(compile_reader, datetimes=True))


def as_millis(value: Any) -> Any:
    """A decoded record with its timestamps (the only datetimes Avro decodes to) as int milliseconds."""
    if isinstance(value, datetime):
        return millis(value)
    if isinstance(value, dict):
        return {key: as_millis(item) for key, item in value.items()}
    if isinstance(value, list):
        return [as_millis(item) for item in value]
    return value


def _read(data: bytes, writer: dict, reader: dict | None, name: str) -> dict:
    body = io.BytesIO(data)
    try:
        record = fastavro.schemaless_reader(body, writer, reader)
    except EOFError as exc:
        raise CodecError("truncated Avro payload") from exc
    except IndexError as exc:
        # fastavro's compiled varint reader raises IndexError, not EOFError, when input runs out.
        if body.tell() >= len(data):
            raise CodecError("truncated Avro payload") from exc
        raise CodecError(f"malformed {name}: union branch or enum symbol out of range") from exc
    except UnicodeDecodeError as exc:
        raise CodecError(f"invalid UTF-8 in string: {exc.reason}") from exc
    except Exception as exc:  # arbitrary bytes reach many failure modes inside fastavro
        raise CodecError(f"malformed {name}: {type(exc).__name__}: {exc}") from exc
    # schemaless_reader stops after one record; leftovers mean a different schema or corruption.
    if left := len(data) - body.tell():
        raise CodecError(f"{left} trailing bytes after the Avro record")
    return record


@functools.cache
def history(name: str) -> tuple[dict, ...]:
    """The earlier versions of a schema (schemas/history/<name>.<version>.avsc), newest first.

    Schemas change only by adding fields with defaults at the end of the record and symbols at the
    end of an enum, so an earlier version's record is a prefix of today's shape and reads unambiguously.
    """
    files = sorted(_SCHEMA_DIR.glob(f"history/{name}.*.avsc"), key=lambda path: int(path.suffixes[0][1:]),
                   reverse=True)
    return tuple(fastavro.parse_schema(json.loads(path.read_text())) for path in files)
