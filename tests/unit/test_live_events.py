"""A connection's stream of events (gateway.live): each event once however it arrives (replayed,
live, out of order, published twice), and after a gap in the live stream what it missed, from the
notification center, or a resync. The center here is a list standing in for PostgreSQL's rows."""

from __future__ import annotations

import asyncio

import psycopg

from gateway import live
from gateway.hub import GAP, RESYNC, Inbox
from gateway.live import Live


class Center:
    """Center.since / latest_seq over rows kept here; `down` failures first, as PostgreSQL away would."""

    def __init__(self, seqs: list[int], down: int = 0) -> None:
        self.rows = [{"id": f"n{seq}", "event_seq": seq, "deleted": False} for seq in seqs]
        self.down, self.asked = down, []

    async def since(self, user: str, after: int, limit: int) -> list[dict]:
        self.asked.append(after)
        if self.down:
            self.down -= 1
            raise psycopg.OperationalError("connection refused")
        return [row for row in self.rows if row["event_seq"] > after][:limit]

    async def latest_seq(self, user: str) -> int:
        return max(row["event_seq"] for row in self.rows)


def created(seq: int) -> dict:
    return {"event": "notification.created", "event_seq": seq, "notification": {"id": f"n{seq}"}}


def stream_of(center: Center, arriving: list, last_event_id: int | None = 0, backlog=()) -> list[dict]:
    """What the connection sends while `arriving` comes through its inbox (until it has sent it all)."""
    async def scenario():
        inbox, sent = Inbox(heartbeats=False), []
        stream = Live(None, center, None, None, None, "gw").events("ana", inbox, list(backlog), last_event_id)
        for item in arriving:
            inbox.put(item)
        try:
            while True:
                sent.append(await asyncio.wait_for(anext(stream), 0.5))
        except (TimeoutError, StopAsyncIteration):
            return sent

    return asyncio.run(scenario())


def test_live_events_out_of_order_are_all_sent_and_a_repeated_one_once():
    # Two lanes' sinks commit 11 before 10; a publish retried after a lost reply repeats 11.
    sent = stream_of(Center([]), [created(11), created(10), created(11)])
    assert [e["event_seq"] for e in sent] == [11, 10]


def test_an_event_both_replayed_and_live_is_sent_once():
    replayed = [{"event": "notification.sync", "event_seq": 5, "notification": {"id": "n5"}}]
    assert [e["event_seq"] for e in stream_of(Center([]), [created(5), created(6)], backlog=replayed)] == [5, 6]


def test_after_a_gap_what_was_stored_meanwhile_is_replayed_once():
    center = Center([3, 4, 5, 6])
    sent = stream_of(center, [created(3), GAP, created(6)])
    assert [(e["event"], e["event_seq"]) for e in sent] == [
        ("notification.created", 3), ("notification.sync", 4), ("notification.sync", 5), ("notification.sync", 6)]
    assert center.asked == [3]  # from the last event it was sent


def test_a_gap_waits_for_postgres_to_come_back(monkeypatch):
    monkeypatch.setattr("asyncio.sleep", fast_sleep())
    center = Center([1, 2], down=3)
    assert [e["event_seq"] for e in stream_of(center, [created(1), GAP])] == [1, 2]
    assert center.asked == [1, 1, 1, 1]


def test_a_gap_that_postgres_does_not_fill_in_time_ends_in_a_resync(monkeypatch):
    monkeypatch.setattr(live, "GAP_PATIENCE_S", 0.0)
    monkeypatch.setattr("asyncio.sleep", fast_sleep())
    sent = stream_of(Center([1, 2], down=100), [created(1), GAP, created(2)])
    assert sent == [created(1), RESYNC]  # it reconnects with its last event id and replays then


def test_a_gap_on_a_connection_with_no_position_asks_it_to_reload():
    sent = stream_of(Center([7, 8]), [GAP], last_event_id=None)
    assert sent == [{**RESYNC, "event_seq": 8}]


def fast_sleep():
    real = asyncio.sleep

    async def sleep(_seconds, *args):
        await real(0)
    return sleep


