"""The generated writers write exactly what fastavro writes, and hand everything unusual back."""

from __future__ import annotations

import datetime as dt
import io
from zoneinfo import ZoneInfo

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import SCHEMA_NAMES, AvroCodec, CodecError, load_schema
from schemas.writer import Unusual, compile_writer, encode_long

AWARE = st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 1, 1),
                     timezones=st.sampled_from([dt.timezone.utc, ZoneInfo("Asia/Kolkata"), ZoneInfo("America/Lima")]))


def records(schema, named):
    """A hypothesis strategy for valid values of `schema`, with optional fields sometimes left out."""
    if isinstance(schema, str) and schema in named:
        schema = named[schema]
    if isinstance(schema, list):
        return st.one_of(*(records(branch, named) for branch in schema))
    kind = schema["type"] if isinstance(schema, dict) else schema
    logical = schema.get("logicalType") if isinstance(schema, dict) else None
    if logical == "timestamp-millis":
        return st.one_of(AWARE, st.integers(-(2**50), 2**50))
    simple = {"null": st.none(), "boolean": st.booleans(), "string": st.text(max_size=20),
              "bytes": st.binary(max_size=20), "int": st.integers(-(2**31), 2**31 - 1),
              "long": st.integers(-(2**63), 2**63 - 1), "double": st.floats(allow_nan=False),
              "float": st.floats(width=32, allow_nan=False)}
    if kind in simple:
        return simple[kind]
    if kind == "enum":
        return st.sampled_from(schema["symbols"])
    if kind == "array":
        return st.lists(records(schema["items"], named), max_size=3)
    if kind == "map":
        return st.dictionaries(st.text(max_size=5), records(schema["values"], named), max_size=3)
    fields = {f["name"]: records(f["type"], named) for f in schema["fields"]}
    optional = [f["name"] for f in schema["fields"] if "default" in f]
    return st.fixed_dictionaries({k: v for k, v in fields.items() if k not in optional},
                                 optional={k: fields[k] for k in optional})


def fastavro_bytes(schema, record) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, schema, record)
    return out.getvalue()


@pytest.mark.parametrize("name", SCHEMA_NAMES)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_byte_identical_to_fastavro(name, data):
    schema = load_schema(name)
    record = data.draw(records(schema, schema["__named_schemas"]))
    assert compile_writer(schema)(record) == fastavro_bytes(schema, record)


def test_zigzag_varints():
    assert [encode_long(n) for n in (0, -1, 1, -64, 64, 2**63 - 1)] == [
        b"\x00", b"\x01", b"\x02", b"\x7f", b"\x80\x01", b"\xfe\xff\xff\xff\xff\xff\xff\xff\xff\x01"]


@pytest.mark.parametrize("change", [
    {"attempt": True},  # bool is not an Avro int
    {"attempt": 2**31},
    {"channel": "fax"},
    {"at": dt.datetime(2026, 1, 1)},  # naive
    {"extra": "field"},
])
def test_unusual_values_are_handed_back(change):
    now = dt.datetime.now(dt.timezone.utc)
    record = {"notification_id": "n", "user_id": "u", "status": "sent", "attempt": 1, "created_at": now, "at": now,
              **change}
    with pytest.raises((Unusual, KeyError, TypeError)):
        compile_writer(load_schema("DeliveryStatus"))(record)
    with pytest.raises(CodecError):  # and the codec's checked path names the problem
        AvroCodec("DeliveryStatus").encode(record)
