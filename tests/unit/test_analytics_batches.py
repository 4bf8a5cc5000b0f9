"""The analytics flow's batch path: a batch of consumed records becomes one item of rows per source
partition (analytics/rows.py), and rows wait for a shared clock or enough company (analytics/batches.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from test_analytics_rows import KEYS, NOW, STATUS

from analytics.batches import Batches
from analytics.rows import COLUMNS, Consumed, Rows
from kernel.requests import preferences_record
from kernel.topics import codec_for
from schemas.writer import millis


def status(offset: int, partition: int) -> Consumed:
    value = codec_for("notify.status").encode({**STATUS, "notification_id": f"n{offset}"})
    return Consumed("notify.status", partition, offset, b"alice", value)


def test_a_batch_becomes_one_item_per_source_partition_holding_its_rows_in_read_order():
    tombstone = Consumed("notify.preferences", 0, 3, b"alice",
                         codec_for("notify.preferences").encode(preferences_record("alice", deleted=True)))
    junk = Consumed("notify.status", 1, 12, b"k", b"\x00junk")
    batch = [status(7, 2), status(10, 1), tombstone, status(8, 2), junk, status(11, 1)]
    items = Rows(KEYS).items(batch, NOW)
    assert [sorted(item) for item in items] == [["rows"], ["rows"], ["erase"], sorted(items[3])]
    assert [[row[COLUMNS.index("source_offset")] for row in item["rows"]] for item in items[:2]] == [[7, 8], [10, 11]]
    assert items[2] == Rows(KEYS).item(*tombstone[:5], NOW)
    assert (items[3]["outcome"], items[3]["source"]["offset"]) == ("dead_letter", 12)


def test_rows_hold_their_times_as_milliseconds_and_otherwise_what_item_gives():
    [item] = Rows(KEYS).items([status(7, 2)], NOW)
    [row] = item["rows"]
    single = dict(zip(COLUMNS, Rows(KEYS).item(*status(7, 2)[:5], NOW)["row"]))
    for column, value in zip(COLUMNS, row):
        assert value == (millis(single[column]) if column in ("at", "created_at", "ingested_at") else single[column])


BATCHES = Batches(rows=5, wait=timedelta(seconds=1))
AT = datetime(2026, 5, 4, 12, 0, 0, 400000, tzinfo=UTC)


def test_rows_wait_for_the_next_tick_of_the_shared_clock():
    state = BATCHES.new_state()
    assert BATCHES.process(state, [{"rows": [1, 2]}], AT) == []
    assert BATCHES.due(state) == datetime(2026, 5, 4, 12, 0, 1, tzinfo=UTC)
    assert BATCHES.process(state, [{"erase": []}], AT + timedelta(milliseconds=500)) == []
    assert BATCHES.due(state) == datetime(2026, 5, 4, 12, 0, 1, tzinfo=UTC)  # the first row's tick
    assert BATCHES.release(state, AT + timedelta(seconds=1)) == [[{"rows": [1, 2]}, {"erase": []}]]
    assert BATCHES.is_empty(state) and BATCHES.due(state) is None


def test_enough_rows_go_at_once():
    state = BATCHES.new_state()
    assert BATCHES.process(state, [{"rows": [1, 2, 3]}], AT) == []
    assert BATCHES.process(state, [{"rows": [4, 5]}], AT) == [[{"rows": [1, 2, 3]}, {"rows": [4, 5]}]]
    assert BATCHES.is_empty(state)
