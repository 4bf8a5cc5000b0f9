"""A connection's inbox: order, batching, falling behind, heartbeats only where asked for."""

import asyncio

from gateway.hub import BACKLOG, HEARTBEAT, RESYNC, Inbox


def test_events_come_out_in_order_and_in_one_batch():
    async def scenario():
        inbox = Inbox(heartbeats=False)
        taking = asyncio.create_task(inbox.take())
        await asyncio.sleep(0)
        inbox.put({"n": 1})
        inbox.put({"n": 2})
        return await taking, inbox.events

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
    assert sse.events == [HEARTBEAT] and websocket.events == []
    sse.events.clear()
    sse.put({"n": 1})
    sse.tick()  # it sent something since the last tick: no heartbeat needed
    assert sse.events == [{"n": 1}]
    sse.tick()
    assert sse.events == [{"n": 1}, HEARTBEAT]
