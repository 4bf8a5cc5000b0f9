"""The engagement profile as it is snapshotted: one bytes object instead of a few dozen small
Python objects. Every user's state is pickled at every snapshot; each object pickle remembers costs
bytes of its own and makes the references of everything pickled after it longer, so the profile
(flows/profile.py) packs itself into a flat struct layout and unpacks into the same dict.
"""

from __future__ import annotations

import struct
import sys

VERSION = 1
_COUNTS = struct.Struct("<BII")  # name index, delivered, answered or ignored
_PENDING = struct.Struct("<HIBB")  # notification key, sent at (epoch s), category index, channel index


class Profile(dict):
    """The learning step's state: a plain dict in memory, packed bytes in a snapshot."""

    def __reduce_ex__(self, protocol):
        return unpack, (pack(self),)


def pack(profile: dict) -> bytes:
    names: list[str] = []

    def index(name: str) -> int:
        if name not in names:
            names.append(name)
        return names.index(name)

    channels, categories = profile.get("channels") or {}, profile.get("categories") or {}
    pending, hours = profile.get("pending") or [], profile.get("hours")
    tables = b"".join(struct.pack("<B", len(table)) + b"".join(
        _COUNTS.pack(index(name), *counts) for name, counts in table.items()) for table in (channels, categories))
    waiting = b"".join(_PENDING.pack(pending[i], pending[i + 1], index(pending[i + 2]), index(pending[i + 3]))
                       for i in range(0, len(pending), 4))
    return b"".join((
        struct.pack("<B", VERSION), text(profile.get("tz") or ""),
        struct.pack("<?d", "at" in profile, profile.get("at", 0.0)),
        struct.pack("<?", hours is not None), bytes(hours) if hours is not None else b"",
        struct.pack("<B", len(names)), *(text(name) for name in names),
        tables, struct.pack("<B", len(pending) // 4), waiting))


def text(value: str) -> bytes:
    encoded = value.encode()
    return struct.pack("<H", len(encoded)) + encoded


def unpack(data: bytes) -> Profile:
    profile, offset = Profile(), 1

    def read(layout: str):
        nonlocal offset
        values = struct.unpack_from(layout, data, offset)
        offset += struct.calcsize(layout)
        return values

    def read_text() -> str:
        nonlocal offset
        (length,) = read("<H")
        offset += length
        return data[offset - length:offset].decode()

    if tz := read_text():
        profile["tz"] = tz
    has_at, at = read("<?d")
    if has_at:
        profile["at"] = int(at) if at.is_integer() else at
    if read("<?")[0]:
        profile["hours"] = bytearray(data[offset:offset + 168])
        offset += 168
    names = [sys.intern(read_text()) for _ in range(read("<B")[0])]
    for key in ("channels", "categories"):
        rows = [read(_COUNTS.format) for _ in range(read("<B")[0])]
        if rows:
            profile[key] = {names[name]: [delivered, other] for name, delivered, other in rows}
    pending = []
    for _ in range(read("<B")[0]):
        key, sent, category, channel = read(_PENDING.format)
        pending.extend((key, sent, names[category], names[channel]))
    if pending:
        profile["pending"] = pending
    return profile
