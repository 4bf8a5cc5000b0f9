"""Avro binary readers generated per schema: the fast path of AvroCodec.decode and decode_values.

fastavro walks the schema for every record it reads (type names, unions, logical types),
which costs the analytics flow more than everything else it does with a status, and the
notification flow a tenth of its time. Here each schema is turned once into straight-line
Python that reads the fields in order, with timestamp-millis as fastavro's aware datetimes or
left as int milliseconds since the epoch (the analytics rows store them as such, so no
datetime is made only to be taken apart again). It takes only what is plainly
well formed; anything else (a truncated or oversized value, an odd varint, bytes left over,
invalid UTF-8) raises, and the codec falls back to fastavro, which decides and gives the
reason. What it returns equals fastavro's record (for decode_values, its field values with its
timestamps in milliseconds); tests compare them.
"""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Callable
from typing import Any

from schemas.writer import EPOCH, Generator, Unusual, millis

# What fastavro can make a datetime of; it fails on anything beyond, so the codec must decide those.
TIMESTAMPS = range(millis(dt.datetime.min.replace(tzinfo=dt.UTC)), millis(dt.datetime.max.replace(tzinfo=dt.UTC)) + 1)


def read_long(data: bytes, position: int) -> tuple[int, int]:
    """A zigzag varint of at most 64 bits at `position`: (value, position after it)."""
    shift = result = 0
    while True:
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (result >> 1) ^ -(result & 1), position
        shift += 7
        if shift > 63:
            raise Unusual("varint longer than 64 bits")


class _Generator(Generator):
    def __init__(self, named: dict, datetimes: bool) -> None:
        super().__init__(named)
        self.datetimes = datetimes

    def long(self, indent: int, var: str) -> None:
        """A zigzag varint: most are one byte; longer ones (timestamps) are read inline too."""
        emit = self.emit
        emit(indent, "b = d[p]; p += 1")
        emit(indent, f"if b < 128: {var} = (b >> 1) ^ -(b & 1)")
        emit(indent, "else:")
        emit(indent + 1, f"{var} = b & 127; s = 7")
        emit(indent + 1, "while True:")
        emit(indent + 2, f"b = d[p]; p += 1; {var} |= (b & 127) << s")
        emit(indent + 2, "if b < 128: break")
        emit(indent + 2, "s += 7")
        emit(indent + 2, "if s > 63: raise Unusual")
        emit(indent + 1, f"{var} = ({var} >> 1) ^ -({var} & 1)")

    def size(self, indent: int, var: str) -> None:
        """A length: one even byte mostly; a negative one is left to fastavro."""
        self.emit(indent, "b = d[p]")
        self.emit(indent, f"if not b & 129: {var} = b >> 1; p += 1")
        self.emit(indent, "else:")
        self.emit(indent + 1, f"{var}, p = read_long(d, p)")
        self.emit(indent + 1, f"if {var} < 0: raise Unusual")

    def typed(self, schema: Any, kind: str, logical: str | None, var: str, indent: int) -> None:
        """Append code reading `schema` at position `p` of `d` into `var`, advancing `p`."""
        emit = self.emit
        if logical not in (None, "timestamp-millis") or (logical and kind != "long"):
            raise NotImplementedError(f"no generated reader for logical type {logical}")
        if kind == "null":
            emit(indent, f"{var} = None")
        elif kind == "boolean":
            emit(indent, f"b = d[p]; p += 1; {var} = b == 1")
            emit(indent, "if b > 1: raise Unusual")
        elif kind in ("int", "long"):
            self.long(indent, var)
            if logical:
                emit(indent, f"if {var} not in TIMESTAMPS: raise Unusual")
                if self.datetimes:  # as fastavro makes them
                    emit(indent, f"{var} = EPOCH + timedelta(microseconds={var} * 1000)")
        elif kind in ("float", "double"):
            unpack = self.constant(struct.Struct("<f" if kind == "float" else "<d"))
            emit(indent, f"({var},) = {unpack}.unpack_from(d, p); p += {unpack}.size")
        elif kind in ("string", "bytes"):
            size = self.name("n")
            self.size(indent, size)
            emit(indent, f"{size} += p; {var} = d[p:{size}]{'.decode()' if kind == 'string' else ''}; p = {size}")
        elif kind == "enum":
            symbols = self.constant(tuple(schema["symbols"]))
            emit(indent, "b = d[p]; p += 1")
            emit(indent, "if b & 129: raise Unusual")
            emit(indent, f"{var} = {symbols}[b >> 1]")  # IndexError: not a symbol
        elif kind == "record":
            self.record(schema, var, indent)
        elif kind in ("array", "map"):
            self.blocks(schema, kind, var, indent)
        else:
            raise NotImplementedError(f"no generated reader for Avro type {kind}")

    def union(self, schema: list, var: str, indent: int) -> None:
        self.emit(indent, "b = d[p]; p += 1")
        for index, branch in enumerate(schema):
            self.emit(indent, f"{'if' if index == 0 else 'elif'} b == {index << 1}:")
            self.value(branch, var, indent + 1)
        self.emit(indent, "else: raise Unusual")

    def blocks(self, schema: dict, kind: str, var: str, indent: int) -> None:
        count, item, key = self.name("n"), self.name("v"), self.name("k")
        self.emit(indent, f"{var} = {{}}" if kind == "map" else f"{var} = []")
        self.emit(indent, "while True:")
        self.long(indent + 1, count)
        self.emit(indent + 1, f"if {count} == 0: break")
        self.emit(indent + 1, f"if {count} < 0: raise Unusual")  # sized blocks: left to fastavro
        self.emit(indent + 1, f"for _ in range({count}):")
        if kind == "map":
            self.value("string", key, indent + 2)
            self.value(schema["values"], item, indent + 2)
            self.emit(indent + 2, f"{var}[{key}] = {item}")
        else:
            self.value(schema["items"], item, indent + 2)
            self.emit(indent + 2, f"{var}.append({item})")

    def record(self, schema: dict, var: str, indent: int, values: bool = False) -> None:
        """A dict, or with `values` a tuple of the field values in the schema's order."""
        fields = [(field["name"], self.name("v")) for field in schema["fields"]]
        for field, (_, item) in zip(schema["fields"], fields):
            self.value(field["type"], item, indent)
        if values:
            self.emit(indent, f"{var} = ({''.join(f'{item}, ' for _, item in fields)})")
        else:
            self.emit(indent, f"{var} = {{{', '.join(f'{name!r}: {item}' for name, item in fields)}}}")


def compile_reader(schema: dict, datetimes: bool = False, values: bool = False) -> Callable[[bytes], dict | tuple]:
    """A function reading one whole record of the parsed `schema` from bytes, timestamps as int
    milliseconds (or as datetimes, as fastavro reads them, with `datetimes`); it raises (Unusual,
    IndexError, UnicodeDecodeError, ...) for anything it does not take as it is. Raises
    NotImplementedError for schemas it cannot generate. With `values` the record comes as the tuple
    of its field values in the schema's order: no dict is built only to be taken apart again."""
    generator = _Generator(schema["__named_schemas"], datetimes)
    generator.emit(0, "def read(d):")
    generator.emit(1, "p = 0")
    if values:
        generator.record(schema, "r", 1, values=True)
    else:
        generator.value(schema, "r", 1)
    generator.emit(1, "if p != len(d): raise Unusual")
    generator.emit(1, "return r")
    return generator.compiled(f"avro reader {schema['name']}", "read", read_long=read_long, TIMESTAMPS=TIMESTAMPS,
                              EPOCH=EPOCH, timedelta=dt.timedelta)
