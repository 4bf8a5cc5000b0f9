"""analytics/store.py on the real ClickHouse engine (chDB, in this process): a writer that starts again
after a crash stores each replayed row once, also across days and after an erasure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from analytics.pseudonym import UserKeys
from analytics.rows import Rows
from analytics.store import RawEvents, erase, stored_offsets
from kernel.topics import codec_for

KEYS = UserKeys(b"store-test-secret-0123456789")
# Raw rows live 90 days (TTL), so the test writes around the last midnight.
MIDNIGHT = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


@pytest.fixture
def client(chdb_client):
    return chdb_client


def items(first: int, count: int, user: str = "alice") -> list[dict]:
    rows, codec = Rows(KEYS), codec_for("notify.status")
    # Around midnight, so a batch spans two days (two partitions of the raw table).
    return [rows.item("notify.status", 0, offset, user.encode(), codec.encode({
        "notification_id": f"n{offset}", "user_id": user, "channel": "push", "device_id": None, "status": "sent",
        "attempt": 1, "provider": "fcm", "reason": None, "category": "c", "campaign_id": None, "variant": None,
        "platform": None, "created_at": MIDNIGHT, "at": MIDNIGHT + timedelta(seconds=offset - 50), "tenant": None,
    }), MIDNIGHT) for offset in range(first, first + count)]


def stored(client) -> list[tuple]:
    return client.query("SELECT day, count(), uniqExact(source_offset) FROM notifyflow.events_raw"
                        " GROUP BY day ORDER BY day").result_rows


def test_the_resume_point_comes_from_the_parts_aggregates_not_a_scan(client):
    RawEvents(client).write(items(0, 80))
    assert client.query("SELECT max(source_offset) FROM notifyflow.events_raw GROUP BY source_topic, source_partition"
                        " SETTINGS force_optimize_projection = 1").result_rows == [(79,)]
    assert stored_offsets(client) == {("notify.status", 0): 79}


def test_a_restarted_writer_skips_what_is_stored_and_keeps_the_rest(client):
    assert RawEvents(client).write(items(0, 80)) == 80
    assert stored(client) == [(MIDNIGHT.date() - timedelta(days=1), 50, 50), (MIDNIGHT.date(), 30, 30)]
    # A resumed flow replays from its last snapshot (offset 40 here) into a fresh writer.
    assert RawEvents(client).write(items(40, 60)) == 20
    assert stored(client) == [(MIDNIGHT.date() - timedelta(days=1), 50, 50), (MIDNIGHT.date(), 50, 50)]
    assert client.query("SELECT sum(sent) FROM notifyflow.kpi_minute SETTINGS force_optimize_projection = 1"
                        ).result_rows == [(100,)]


def test_an_erased_users_rows_are_not_written_again_by_a_replay(client):
    RawEvents(client).write(items(0, 10) + items(10, 5, user="bob"))
    erase(client, KEYS.every_version("bob", MIDNIGHT))
    # bob's rows were the newest; the replay after a crash must not bring them back.
    assert RawEvents(client).write(items(0, 10) + items(10, 5, user="bob")) == 0
    assert client.query("SELECT count() FROM notifyflow.events_raw").result_rows == [(10,)]
