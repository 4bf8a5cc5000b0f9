"""Fan-out inside one gateway process: one Redis subscription per user (a tenant's user, one channel
each) that has a connection here, shared by all of that user's connections (devices, tabs). Gateways
scale out behind Redis pub/sub: each subscribes only to the users connected to it.

A gateway holds tens of thousands of mostly idle connections, so an idle one costs no task,
timer or queue of its own: it is an Inbox (a list and, while its sender waits, one future),
and one ticker sends every quiet Server-Sent Events stream its heartbeat."""

from __future__ import annotations

import asyncio
import json
import logging

import redis.asyncio as aioredis

from connectors.redis import user_channel
from gateway.auth import User

log = logging.getLogger(__name__)
BACKLOG = 1000  # a connection this far behind is too slow to keep; it reconnects and replays
HEARTBEAT_S = 15.0
RESYNC = {"event": "resync"}
HEARTBEAT = {"event": "heartbeat"}
# What a client may do to its notifications (Center.set_state's changes), and the event that
# tells the user's other devices.
CHANGES = {"read": "notification.read", "unread": "notification.unread", "archive": "notification.archived"}


class Inbox:
    """The events one connection has yet to send, in order."""

    __slots__ = ("events", "waiter", "heartbeats", "quiet")

    def __init__(self, heartbeats: bool) -> None:
        self.events: list[dict] = []
        self.waiter: asyncio.Future | None = None
        self.heartbeats, self.quiet = heartbeats, True

    def put(self, event: dict) -> None:
        if len(self.events) >= BACKLOG:
            # Too far behind: drop what it has not sent; it reconnects and replays from its last event.
            log.warning("a connection fell %d events behind; asking it to resync", BACKLOG)
            self.events = [RESYNC]
        elif self.events[-1:] != [RESYNC]:
            self.events.append(event)
        self.quiet = False
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def take(self) -> list[dict]:
        """Everything waiting, at least one event; waits when there is none."""
        while not self.events:
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        events, self.events = self.events, []
        return events

    def tick(self) -> None:
        """Called every HEARTBEAT_S: a stream that sent nothing since the last tick gets a heartbeat."""
        if self.heartbeats and self.quiet:
            self.put(HEARTBEAT)
        self.quiet = True


class Hub:
    def __init__(self, redis_url: str) -> None:
        self.redis = aioredis.from_url(redis_url)
        self.pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        self.listeners: dict[str, set[Inbox]] = {}  # by the user's channel
        # The PubSub connection is not safe for concurrent use: only the reader task touches it.
        self.commands: asyncio.Queue = asyncio.Queue()
        self.tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        self.tasks = [asyncio.create_task(self.run()), asyncio.create_task(self.heartbeats())]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.pubsub.aclose()
        await self.redis.aclose()

    async def subscribe(self, user: User, heartbeats: bool = False) -> Inbox:
        inbox, channel = Inbox(heartbeats), user_channel(user.tenant, user.id)
        if channel not in self.listeners:
            self.listeners[channel] = set()
            done = asyncio.get_running_loop().create_future()
            await self.commands.put(("subscribe", channel, done))
            try:
                await done  # live from here on
            except asyncio.CancelledError:  # the connection went away while subscribing
                if not self.listeners.get(channel):
                    self.listeners.pop(channel, None)
                    await self.commands.put(("unsubscribe", channel, None))
                raise
        self.listeners.setdefault(channel, set()).add(inbox)
        return inbox

    async def unsubscribe(self, user: User, inbox: Inbox) -> None:
        channel = user_channel(user.tenant, user.id)
        listeners = self.listeners.get(channel, set())
        listeners.discard(inbox)
        if not listeners and channel in self.listeners:
            del self.listeners[channel]
            await self.commands.put(("unsubscribe", channel, None))

    async def publish(self, user: User, event: dict) -> None:
        await self.redis.publish(user_channel(user.tenant, user.id), json.dumps(event))

    async def publish_changes(self, user: User, change: str, rows: list[dict]) -> None:
        """Every open device of the user learns of a change made on one of them."""
        for row in rows:
            await self.publish(user, {"event": CHANGES[change], "event_seq": row["event_seq"], "notification": row})

    async def heartbeats(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            for inboxes in list(self.listeners.values()):
                for inbox in inboxes:
                    inbox.tick()

    async def run(self) -> None:
        while True:
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:  # one bad message or a Redis hiccup must not stop every user's events
                log.exception("gateway hub: retrying after an error")
                await asyncio.sleep(0.5)

    async def step(self) -> None:
        while not self.commands.empty():
            command, channel, done = self.commands.get_nowait()
            await getattr(self.pubsub, command)(channel)
            if done is not None and not done.done():  # its connection may have gone meanwhile
                done.set_result(None)
        if not self.pubsub.subscribed:
            await asyncio.sleep(0.01)
            return
        message = await self.pubsub.get_message(timeout=0.01)
        if message and message["type"] == "message":
            self.dispatch(message["channel"].decode(), message["data"])

    def dispatch(self, channel: str, data: bytes) -> None:
        event = json.loads(data)
        for inbox in list(self.listeners.get(channel, ())):
            inbox.put(event)
