"""Writes raw analytics rows to ClickHouse exactly once, and erases users' rows.

Bytewax resumes a killed flow from its last snapshot and replays what came after it, so a
resumed writer first reads the newest source offset already stored per topic partition and
skips everything at or below it. That is exact because rows are inserted in the order each
partition was read: an insert that a kill cut short stored a prefix of it (ClickHouse commits
each part whole, in order), never a later row without the earlier ones. The per-minute rollups
are a projection stored inside each part, so they are exactly as exact as the rows.
"""

from __future__ import annotations

from collections.abc import Iterable

from analytics.rows import COLUMNS

RAW = "notifyflow.events_raw"
_DAY = COLUMNS.index("at")
_TOPIC, _PARTITION, _OFFSET = (COLUMNS.index(c) for c in ("source_topic", "source_partition", "source_offset"))


class RawEvents:
    def __init__(self, client) -> None:
        self.client = client
        self.stored = stored_offsets(client)

    def write(self, items: Iterable[dict]) -> int:
        """Rows and erasures in the order they were read; returns the number of rows inserted."""
        rows, inserted = [], 0
        for item in items:
            if "erase" in item:
                inserted += self.insert(rows)
                rows = []
                erase(self.client, item["erase"])
            elif item["row"][_OFFSET] > self.stored.get((item["row"][_TOPIC], item["row"][_PARTITION]), -1):
                rows.append(item["row"])
        return inserted + self.insert(rows)

    def insert(self, rows: list[list]) -> int:
        # One insert per run of rows on the same day: each run is one part of the day-partitioned
        # table, so what a kill leaves behind is always a prefix of what was read.
        start = 0
        for end in range(1, len(rows) + 1):
            if end == len(rows) or rows[end][_DAY].date() != rows[start][_DAY].date():
                self.client.insert(RAW, rows[start:end], column_names=COLUMNS)
                start = end
        return len(rows)


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
