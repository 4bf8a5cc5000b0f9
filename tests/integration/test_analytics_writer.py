"""analytics/store.py writing the flow's batch items (the rows of one source partition each, times in
milliseconds) on the real ClickHouse engine: stored as single rows are, each day in its own insert,
and a replay after a crash stores nothing twice."""

from __future__ import annotations

from datetime import timedelta

from test_analytics_store import KEYS, MIDNIGHT, client, stored  # noqa: F401 (client is a fixture)

from analytics.rows import COLUMNS, Consumed, Rows
from analytics.store import RawEvents
from kernel.topics import codec_for
from schemas.writer import millis


def record(offset: int) -> Consumed:
    """Around midnight, so a batch spans two days; offsets alternate between two source partitions."""
    return Consumed("notify.status", offset % 2, offset, b"alice", codec_for("notify.status").encode({
        "notification_id": f"n{offset}", "user_id": "alice", "channel": "push", "device_id": None, "status": "sent",
        "attempt": 1, "provider": "fcm", "reason": None, "category": "c", "campaign_id": None, "variant": None,
        "platform": None, "created_at": MIDNIGHT, "at": MIDNIGHT + timedelta(seconds=offset - 50), "tenant": None}))


def batch(first: int, count: int) -> list[dict]:
    return Rows(KEYS).items([record(offset) for offset in range(first, first + count)], MIDNIGHT)


def test_batches_store_what_single_rows_store_and_a_replay_adds_nothing(client):  # noqa: F811
    assert RawEvents(client).write(batch(0, 80)) == 80
    assert stored(client) == [(MIDNIGHT.date() - timedelta(days=1), 50, 50), (MIDNIGHT.date(), 30, 30)]
    # A resumed flow replays from its last snapshot (offset 40 here) into a fresh writer.
    assert RawEvents(client).write(batch(40, 60)) == 20
    assert RawEvents(client).write(batch(0, 100)) == 0
    assert stored(client) == [(MIDNIGHT.date() - timedelta(days=1), 50, 50), (MIDNIGHT.date(), 50, 50)]
    times = {"at", "created_at", "ingested_at"}
    columns = ", ".join(f"toUnixTimestamp64Milli({c})" if c in times else c for c in COLUMNS)
    [row] = client.query(f"SELECT {columns} FROM notifyflow.events_raw WHERE source_offset = 61").result_rows
    single = Rows(KEYS).item(*record(61)[:5], MIDNIGHT)["row"]
    assert list(row) == [millis(v) if c in times else v for c, v in zip(COLUMNS, single)]
