"""Writes raw analytics rows to ClickHouse exactly once, and erases users' rows.

Bytewax resumes a killed flow from its last snapshot and replays what came after it, so a
resumed writer first reads the newest source offset already stored per topic partition and
skips everything at or below it. That is exact because rows are inserted in the order each
partition was read: an insert that a kill cut short stored a prefix of it (ClickHouse commits
each part whole, in order), never a later row without the earlier ones. The per-minute rollups
are a projection stored inside each part, so they are exactly as exact as the rows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from analytics.rows import COLUMNS, TIMES
from schemas.writer import millis

RAW = "notifyflow.events_raw"
DAY_MS = 86_400_000
_AT = COLUMNS.index("at")
_TOPIC, _PARTITION, _OFFSET = (COLUMNS.index(c) for c in ("source_topic", "source_partition", "source_offset"))


class RawEvents:
    def __init__(self, client) -> None:
        self.client = client
        self.stored = stored_offsets(client)
        self.types = insert_types(client)

    def write(self, items: Iterable[dict]) -> int:
        """Rows and erasures in the order they were read; returns the number of rows inserted.
        Items hold the rows of one source partition ({"rows": [...]}, times as int milliseconds) or
        one row ({"row": [...]}, times as datetimes)."""
        rows, inserted = [], 0
        for item in items:
            if "erase" in item:
                inserted += self.insert(rows)
                rows = []
                erase(self.client, item["erase"])
            else:
                rows += self.unstored(item["rows"] if "rows" in item else [in_millis(item["row"])])
        return inserted + self.insert(rows)

    def unstored(self, rows: list) -> list:
        """The rows (of one source partition, in read order) that come after the newest one stored."""
        newest = self.stored.get((rows[0][_TOPIC], rows[0][_PARTITION]), -1)
        return rows if rows[0][_OFFSET] > newest else [row for row in rows if row[_OFFSET] > newest]

    def insert(self, rows: list) -> int:
        # One insert per run of rows on the same day: each run is one part of the day-partitioned
        # table, so what a kill leaves behind is always a prefix of what was read. Column by
        # column, so clickhouse-connect writes each column whole instead of value by value.
        if not rows:
            return 0
        columns = list(zip(*rows))
        days = columns[_AT]
        if min(days) // DAY_MS == max(days) // DAY_MS:
            self.insert_columns(columns)
            return len(rows)
        start = 0
        for end in range(1, len(rows) + 1):
            if end == len(rows) or days[end] // DAY_MS != days[start] // DAY_MS:
                self.insert_columns([column[start:end] for column in columns])
                start = end
        return len(rows)

    def insert_columns(self, columns: list) -> None:
        self.client.insert(RAW, columns, column_names=COLUMNS, column_type_names=self.types, column_oriented=True)


def in_millis(row: list) -> list:
    """A row with its times as datetimes, as int milliseconds."""
    return [millis(value) if column in TIMES else value for column, value in enumerate(row)]


def insert_types(client) -> list[str]:
    """The raw table's column types as inserts send them: LowCardinality columns as their plain type.
    ClickHouse builds the dictionaries itself; clickhouse-connect would build them in Python, value by
    value (the largest part of an insert's time in a profile)."""
    types = {name: kind for name, kind, *_ in client.query(f"DESCRIBE TABLE {RAW}").result_rows}
    return [re.sub(r"^LowCardinality\((.*)\)$", r"\1", types[name]) for name in COLUMNS]


def stored_offsets(client) -> dict[tuple[str, int], int]:
    """Answered by the stored_offsets projection of the raw table (and the marks erasures left)."""
    result = client.query(
        "SELECT source_topic, source_partition, max(newest) FROM ("
        f" SELECT source_topic, source_partition, max(source_offset) AS newest FROM {RAW}"
        " GROUP BY source_topic, source_partition"
        " UNION ALL SELECT source_topic, source_partition, source_offset FROM notifyflow.ingest_marks"
        ") GROUP BY source_topic, source_partition")
    return {(topic, partition): offset for topic, partition, offset in result.result_rows}


def erase(client, user_keys: list[tuple[int, str]]) -> None:
    """Delete a user's rows under every key version given; the newest offsets are kept first, so the
    writer's resume point never moves back (an erased row must not be written again on resume)."""
    client.command(
        "INSERT INTO notifyflow.ingest_marks SELECT source_topic, source_partition, max(source_offset)"
        f" FROM {RAW} GROUP BY source_topic, source_partition")
    pairs = ", ".join(f"({int(version)}, '{key}')" for version, key in user_keys if key.isalnum())
    if pairs:
        client.command(f"DELETE FROM {RAW} WHERE (key_version, user_key) IN ({pairs})")
