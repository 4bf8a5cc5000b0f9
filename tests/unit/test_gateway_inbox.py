"""A connection's inbox: order, batching, falling behind, heartbeats only where asked for."""

import asyncio

from gateway.hub import BACKLOG, GAP, HEARTBEAT, RESYNC, Inbox


def test_events_come_out_in_order_and_in_one_batch():
    async def scenario():
        inbox = Inbox(heartbeats=False)
        taking = asyncio.create_task(inbox.take())
        await asyncio.sleep(0)
        inbox.put({"n": 1})
        inbox.put({"n": 2})
        return await taking, inbox.items

    taken, left = asyncio.run(scenario())
    assert taken == [{"n": 1}, {"n": 2}]
    assert left == []


def test_a_connection_that_falls_behind_gets_only_a_resync():
    inbox = Inbox(heartbeats=False)
    for n in range(BACKLOG + 5):
        inbox.put({"n": n})
    assert asyncio.run(inbox.take()) == [RESYNC]


def test_heartbeat_only_for_streams_that_want_it_and_only_when_quiet():
    sse, websocket = Inbox(heartbeats=True), Inbox(heartbeats=False)
    sse.tick(), websocket.tick()
    assert sse.items == [HEARTBEAT] and websocket.items == []
    sse.items.clear()
    sse.put({"n": 1})
    sse.tick()  # it sent something since the last tick: no heartbeat needed
    assert sse.items == [{"n": 1}]
    sse.tick()
    assert sse.items == [{"n": 1}, HEARTBEAT]


def test_an_inbox_that_overflows_while_its_sender_is_stuck_writing_asks_for_a_cut_off():
    inbox, cut = Inbox(heartbeats=False), []
    inbox.on_overflow = lambda: cut.append(True)
    for n in range(BACKLOG + 5):  # no one waits in take(): the sender is stuck in a send
        inbox.put({"n": n})
    assert cut == [True] and inbox.items == [RESYNC]


def test_a_sender_waiting_for_events_is_not_stuck_so_nothing_is_cut():
    async def scenario():
        inbox, cut = Inbox(heartbeats=False), []
        inbox.on_overflow = lambda: cut.append(True)
        taking = asyncio.create_task(inbox.take())
        await asyncio.sleep(0)
        for n in range(BACKLOG + 5):  # a burst before the sender runs again: it sends the resync itself
            inbox.put({"n": n})
        return cut, await taking

    cut, taken = asyncio.run(scenario())
    assert cut == [] and taken == [RESYNC]


def test_a_gap_is_marked_once_and_a_resync_makes_it_moot():
    inbox = Inbox(heartbeats=False)
    inbox.put({"n": 1})
    inbox.put(GAP)
    inbox.put({"n": 2})
    inbox.put(GAP)
    assert inbox.items == [{"n": 1}, GAP, {"n": 2}]
    for n in range(BACKLOG):
        inbox.put({"n": n})
    inbox.put(GAP)
    assert inbox.items == [RESYNC]
