"""The generated readers read exactly what fastavro reads (timestamps as milliseconds), and hand
everything unusual back to the codec's checked path, which then decides as decode() does."""

from __future__ import annotations

import datetime as dt
import io
import json
import struct
from pathlib import Path

import fastavro
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_schema_history import OLD_RECORDS
from test_writer import fastavro_bytes, records

import schemas
from schemas import SCHEMA_NAMES, AvroCodec, CodecError, load_schema
from schemas.codec import as_millis, history
from schemas.reader import compile_reader, read_long
from schemas.writer import Unusual, encode_long, millis

NOW = dt.datetime(2026, 5, 4, 12, 0, 0, 123000, tzinfo=dt.timezone.utc)
STATUS = {"notification_id": "n1", "user_id": "ana", "channel": "push", "device_id": None, "status": "sent",
          "attempt": 1, "provider": "fcm", "reason": None, "category": "c", "campaign_id": None, "variant": None,
          "platform": "android", "created_at": NOW, "at": NOW, "tenant": None, "cohort": "treated",
          "send_time": "optimal"}


def values(record: dict) -> tuple:
    """What decode_values gives for a record fastavro reads as `record`: its field values in order."""
    return tuple(as_millis(record).values())


@pytest.mark.parametrize("name", SCHEMA_NAMES)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_reads_what_fastavro_reads(name, data):
    schema = load_schema(name)
    written = fastavro_bytes(schema, data.draw(records(schema, schema["__named_schemas"])))
    try:
        read = fastavro.schemaless_reader(io.BytesIO(written), schema, None)
    except OverflowError:  # a timestamp beyond what a datetime holds: fastavro refuses it, so must the codec
        for reader in (compile_reader(schema), compile_reader(schema, datetimes=True),
                       compile_reader(schema, values=True)):
            with pytest.raises(Unusual):
                reader(written)
        for decode in (AvroCodec(name).decode_values, AvroCodec(name).decode):
            with pytest.raises(CodecError):
                decode(written)
        return
    assert compile_reader(schema)(written) == as_millis(read)
    assert compile_reader(schema, values=True)(written) == AvroCodec(name).decode_values(written) == values(read)
    assert compile_reader(schema, datetimes=True)(written) == read
    assert AvroCodec(name).decode(written) == read


def test_long_varints():
    for n in (0, -1, 1, -64, 64, 2**31, -(2**63), 2**63 - 1):
        assert read_long(b"x" + encode_long(n), 1) == (n, 1 + len(encode_long(n)))


def test_a_status_reads_with_its_timestamps_in_milliseconds():
    codec = AvroCodec("DeliveryStatus")
    assert codec.decode_values(codec.encode(STATUS)) == values({**STATUS, "created_at": millis(NOW), "at": millis(NOW)})


@pytest.mark.parametrize("damage", [
    lambda b: b[:-1],  # truncated
    lambda b: b + b"\x00",  # a byte left over
    lambda b: b"\x7f" + b[1:],  # a negative string length
    lambda b: b[:1] + b"\xff\xfe" + b[3:],  # invalid UTF-8
    lambda b: b"\x02n1\x06ana\x04" + b[8:],  # union branch out of range
    lambda b: b"",
])
def test_damaged_records_fail_as_decode_fails(damage):
    codec = AvroCodec("DeliveryStatus")
    damaged = damage(codec.encode(STATUS))
    with pytest.raises(CodecError) as plain:
        codec.decode(damaged)
    with pytest.raises(CodecError) as fast:
        codec.decode_values(damaged)
    assert fast.value.reason == plain.value.reason


@pytest.mark.parametrize("older", history("PreferencesUpdated"))
def test_records_of_every_earlier_schema_version_read_into_todays_shape(older):
    written = fastavro_bytes(older, OLD_RECORDS["PreferencesUpdated"])
    codec = AvroCodec("PreferencesUpdated")
    decoded = dict(zip(codec.field_names, codec.decode_values(written)))
    assert decoded == as_millis(codec.decode(written))
    assert decoded["presentation"] is None and decoded["tenant"] == "default"


def test_through_a_registry_the_current_version_reads_fast_and_others_resolve(monkeypatch):
    registry = SchemaRegistryClient.new_client({"url": "mock://"})
    codec = AvroCodec("DeliveryStatus", registry=registry, topic="statuses")
    data = codec.encode(STATUS)
    assert codec.decode_values(data) == values(STATUS)
    old = {**json.loads((Path(schemas.__file__).parent / "DeliveryStatus.avsc").read_text())}
    old["fields"] = [field for field in old["fields"] if field["name"] != "tenant"]
    old_id = registry.register_schema("older-value", Schema(json.dumps(old), "AVRO"))
    written = struct.pack(">BI", 0, old_id) + fastavro_bytes(fastavro.parse_schema(old), STATUS)
    monkeypatch.setattr("schemas.codec._fast_values_reader",
                        lambda name: lambda body: pytest.fail("read as the current version"))
    assert codec.decode_values(written) == values(STATUS)
