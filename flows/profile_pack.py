"""Engagement profiles (flows/profile.py) in snapshots taken while they were packed into one bytes
object, read back into the dict they were.

Packing cost every snapshot 8-16 µs of CPU a user (the fullest profile: 15.6 µs for 551 bytes)
where pickling the dict as it is costs 1-2 µs (619 bytes), and a snapshot pickles the state of every
user touched since the last one on the flow's only worker while requests wait: it was the largest
part of a user's snapshot in bench.e2e. Profiles are snapshotted as plain dicts now; a snapshot taken
before names `unpack` here, which reads the layout below.
"""

from __future__ import annotations

import struct
import sys

_COUNTS = struct.Struct("<BII")  # name index, delivered, answered or ignored
_PENDING = struct.Struct("<HIBB")  # notification key, sent at (epoch s), category index, channel index


def unpack(data: bytes) -> dict:
    profile, offset = {}, 1

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
