"""Avro binary writers generated per schema: the fast path of AvroCodec.encode.

fastavro walks the schema for every record; a flow writes two or three records per event,
so that walk dominated its time. Here each schema is turned once into straight-line Python
that writes the fields in order, taking only the exact types the flows produce (str, int,
aware datetime, dict, list, ...). Anything else raises Unusual and the codec falls back to
validation plus fastavro, which also produces the error reason. Output is byte-identical
to fastavro's (tests compare them).
"""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Callable
from typing import Any

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_INT_BOUNDS = {"int": (-(2**31), 2**31), "long": (-(2**63), 2**63)}


class Unusual(Exception):
    """A value the generated writer does not take as it is; the slow path decides."""


def encode_long(n: int) -> bytes:
    """Zigzag varint, as Avro writes int and long."""
    n = (n << 1) ^ (n >> 63)
    if n < 0x80:
        return _SMALL[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL = [bytes([n]) for n in range(0x80)]


def millis(value: dt.datetime) -> int:
    if value.tzinfo is None:
        raise Unusual("naive datetime")
    delta = value - EPOCH
    return (delta.days * 86400 + delta.seconds) * 1000 + delta.microseconds // 1000


class Generator:
    """Straight-line Python for one schema, built line by line (writers here, readers in schemas/reader.py)."""

    def __init__(self, named: dict) -> None:
        self.named = named
        self.lines: list[str] = []
        self.constants: dict[str, Any] = {}
        self.counter = 0

    def name(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def constant(self, value: Any) -> str:
        name = self.name("_c")
        self.constants[name] = value
        return name

    def emit(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)

    def value(self, schema: Any, var: str, indent: int) -> None:
        """Append the code of `var` as `schema`: a named type's definition, a union, or `typed`."""
        if isinstance(schema, str) and schema in self.named:
            schema = self.named[schema]
        if isinstance(schema, list):
            return self.union(schema, var, indent)
        kind = schema["type"] if isinstance(schema, dict) else schema
        logical = schema.get("logicalType") if isinstance(schema, dict) else None
        return self.typed(schema, kind, logical, var, indent)

    def union(self, schema: list, var: str, indent: int) -> None:
        raise NotImplementedError

    def typed(self, schema: Any, kind: str, logical: str | None, var: str, indent: int) -> None:
        raise NotImplementedError

    def compiled(self, title: str, function: str, **names: Any) -> Callable:
        """The function the lines define, with the constants and `names` in its globals."""
        namespace = {"Unusual": Unusual, **names, **self.constants}
        exec(compile("\n".join(self.lines), f"<{title}>", "exec"), namespace)
        return namespace[function]


class _Generator(Generator):
    def emit_long(self, indent: int, expression: str) -> None:
        """Most lengths and counts fit one byte: skip the call for those."""
        self.emit(indent, f"if 0 <= {expression} < 64: b.append({expression} << 1)")
        self.emit(indent, f"else: b += encode_long({expression})")

    def typed(self, schema: Any, kind: str, logical: str | None, var: str, indent: int) -> None:
        """Append code writing `var` (already bound) as `schema` to the bytearray `b`."""
        emit = self.emit
        if kind == "null":
            emit(indent, f"if {var} is not None: raise Unusual")
        elif kind == "boolean":
            emit(indent, f"if {var} is True: b.append(1)")
            emit(indent, f"elif {var} is False: b.append(0)")
            emit(indent, "else: raise Unusual")
        elif kind in _INT_BOUNDS:
            low, high = _INT_BOUNDS[kind]
            if logical == "timestamp-millis":
                emit(indent, f"if {var}.__class__ is datetime: {var} = millis({var})")
            emit(indent, f"if {var}.__class__ is not int or not {low} <= {var} < {high}: raise Unusual")
            self.emit_long(indent, var)
        elif kind in ("float", "double"):
            packer = self.constant(struct.Struct("<f" if kind == "float" else "<d").pack)
            emit(indent, f"if {var}.__class__ is not float and {var}.__class__ is not int: raise Unusual")
            emit(indent, f"b += {packer}({var})")
        elif kind == "string":
            emit(indent, f"if {var}.__class__ is not str: raise Unusual")
            size = self.name("n")
            emit(indent, f"{var} = {var}.encode(); {size} = len({var})")
            self.emit_long(indent, size)
            emit(indent, f"b += {var}")
        elif kind == "bytes":
            emit(indent, f"if {var}.__class__ is not bytes and {var}.__class__ is not bytearray: raise Unusual")
            emit(indent, f"b += encode_long(len({var})); b += {var}")
        elif kind == "enum":
            table = self.constant({symbol: encode_long(i) for i, symbol in enumerate(schema["symbols"])})
            emit(indent, f"b += {table}[{var}]")  # KeyError/TypeError: not a symbol
        elif kind == "record":
            self.record(schema, var, indent)
        elif kind == "array":
            item = self.name("v")
            emit(indent, f"if {var}.__class__ is not list and {var}.__class__ is not tuple: raise Unusual")
            emit(indent, f"if {var}:")
            self.emit_long(indent + 1, f"len({var})")
            emit(indent + 1, f"for {item} in {var}:")
            self.value(schema["items"], item, indent + 2)
            emit(indent, "b.append(0)")
        elif kind == "map":
            key, item = self.name("k"), self.name("v")
            emit(indent, f"if {var}.__class__ is not dict: raise Unusual")
            emit(indent, f"if {var}:")
            self.emit_long(indent + 1, f"len({var})")
            emit(indent + 1, f"for {key}, {item} in {var}.items():")
            self.value("string", key, indent + 2)
            self.value(schema["values"], item, indent + 2)
            emit(indent, "b.append(0)")
        else:
            raise NotImplementedError(f"no generated writer for Avro type {kind}")

    def union(self, schema: list, var: str, indent: int) -> None:
        branches = [branch for branch in schema if branch != "null"]
        if len(branches) != 1:
            raise NotImplementedError("generated writers handle [null, T] unions only")
        if "null" not in schema:
            return self.value(branches[0], var, indent)
        null_index, value_index = schema.index("null"), schema.index(branches[0])
        self.emit(indent, f"if {var} is None: b += {encode_long(null_index)!r}")
        self.emit(indent, "else:")
        self.emit(indent + 1, f"b += {encode_long(value_index)!r}")
        self.value(branches[0], var, indent + 1)

    def record(self, schema: dict, var: str, indent: int) -> None:
        fields = self.constant(frozenset(field["name"] for field in schema["fields"]))
        self.emit(indent, f"if {var}.__class__ is not dict or not {fields}.issuperset({var}): raise Unusual")
        for field in schema["fields"]:
            item = self.name("v")
            if "default" in field:
                default = self.constant(field["default"])
                self.emit(indent, f"{item} = {var}.get({field['name']!r}, {default})")
            else:
                self.emit(indent, f"{item} = {var}[{field['name']!r}]")
            self.value(field["type"], item, indent)


def compile_writer(schema: dict) -> Callable[[dict], bytes]:
    """A function writing one record of the parsed `schema`; raises Unusual (or a lookup error)
    for anything it does not take as it is. Raises NotImplementedError for schemas it cannot
    generate (unions of several non-null types)."""
    generator = _Generator(schema["__named_schemas"])
    generator.emit(0, "def write(r):")
    generator.emit(1, "b = bytearray()")
    generator.value(schema, "r", 1)
    generator.emit(1, "return bytes(b)")
    return generator.compiled(f"avro writer {schema['name']}", "write", encode_long=encode_long, millis=millis,
                              datetime=dt.datetime)
