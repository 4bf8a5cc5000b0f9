"""Fan-out inside one gateway process: one Redis subscription per user (a tenant's user, one channel
each) that has a connection here, shared by all of that user's connections (devices, tabs). Gateways
scale out behind Redis pub/sub: each subscribes only to the users connected to it.

A gateway holds tens of thousands of mostly idle connections, so an idle one costs no task,
timer or queue of its own: it is an Inbox (a list and, while its sender waits, one future),
and one ticker sends every quiet Server-Sent Events stream its heartbeat.

Redis may go away (a restart, a failover). Pub/sub keeps nothing for a subscriber that is not
there, so when the subscription comes back every inbox gets a GAP: its connection catches up
from PostgreSQL, where every change is stored before it is published (gateway.live). The
Redis client never reconnects behind the hub's back (its own retries are off): a silent
resubscription would leave devices behind without anyone knowing."""

from __future__ import annotations

import asyncio
import json
import logging
import random

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from connectors.redis import user_channel
from gateway.auth import User
from gateway.one_reader import OneReader

log = logging.getLogger(__name__)
BACKLOG = 1000  # a connection this far behind is too slow to keep; it reconnects and replays
HEARTBEAT_S = 15.0
RESUBSCRIBE_DELAYS_S = (0.1, 0.2, 0.5, 1.0, 2.0)  # then every 2 s (jittered) while Redis is away
SUBSCRIBE_CHUNK = 1000  # channels per SUBSCRIBE when a whole gateway's users subscribe again
RESYNC = {"event": "resync"}
HEARTBEAT = {"event": "heartbeat"}
GAP = {"event": "gap"}  # internal, never sent: live events may be missing before this point
# What a client may do to its notifications (Center.set_state's changes), and the event that
# tells the user's other devices.
CHANGES = {"read": "notification.read", "unread": "notification.unread", "archive": "notification.archived"}


class Inbox(OneReader):
    """The events one connection has yet to send, in order (`items`)."""

    __slots__ = ("heartbeats", "quiet", "on_overflow")

    def __init__(self, heartbeats: bool) -> None:
        super().__init__()
        self.heartbeats, self.quiet = heartbeats, True
        # Called when the inbox overflows while its sender is not waiting for events, i.e. stuck
        # writing to a peer that stopped reading: the connection is cut off (gateway.live).
        self.on_overflow = None

    def put(self, event: dict) -> None:
        if len(self.items) >= BACKLOG:
            # Too far behind: drop what it has not sent; it reconnects and replays from its last event.
            log.warning("a connection fell %d events behind; asking it to resync", BACKLOG)
            self.items = [RESYNC]
            if self.waiter is None and self.on_overflow is not None:
                self.on_overflow()
        elif event is GAP and any(queued is GAP for queued in self.items):
            return  # one catch-up covers both
        elif self.items[-1:] != [RESYNC]:
            self.items.append(event)
        self.quiet = False
        self.wake()

    async def take(self) -> list[dict]:
        """Everything waiting, at least one event; waits when there is none."""
        await self.wait()
        events, self.items = self.items, []
        return events

    def tick(self) -> None:
        """Called every HEARTBEAT_S: a stream that sent nothing since the last tick gets a heartbeat."""
        if self.heartbeats and self.quiet:
            self.put(HEARTBEAT)
        self.quiet = True


class Hub:
    def __init__(self, redis_url: str) -> None:
        # No retries inside the client: the hub must see every lost connection (see above).
        self.redis = aioredis.from_url(redis_url, retry=Retry(NoBackoff(), 0))
        self.pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        self.listeners: dict[str, set[Inbox]] = {}  # by the user's channel
        # The PubSub connection is not safe for concurrent use: only the reader task touches it.
        self.commands: asyncio.Queue = asyncio.Queue()
        self.unconfirmed: list[asyncio.Future] = []  # subscribers waiting for a command Redis may not have had
        self.tasks: list[asyncio.Task] = []
        self.subscribed = True  # False from a lost subscription until every channel is subscribed again

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
        if channel not in self.listeners and not self.subscribed:
            # Redis is away: the resubscription will include this channel and mark this inbox's gap.
            self.listeners[channel] = {inbox}
            return inbox
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
        failures = 0
        while True:
            try:
                if not self.subscribed:
                    await self.resubscribe()
                await self.step()
                failures = 0
            except asyncio.CancelledError:
                raise
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                if self.subscribed:
                    log.warning("gateway hub: Redis went away (%s); subscribing again when it is back", exc)
                self.subscribed = False
                delay = RESUBSCRIBE_DELAYS_S[min(failures, len(RESUBSCRIBE_DELAYS_S) - 1)]
                failures += 1
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))  # gateways do not all come back at once
            except Exception:  # one bad message must not stop every user's events
                log.exception("gateway hub: retrying after an error")
                await asyncio.sleep(0.5)

    async def resubscribe(self) -> None:
        """A new subscription to every user connected here; then each inbox catches up on what
        was published while there was none. Raises (and is called again) while Redis is away."""
        await self.pubsub.aclose()
        self.pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        while not self.commands.empty():  # the listeners are the truth now; their waiters are answered below
            self.unconfirmed.append(self.commands.get_nowait()[2])
        channels = list(self.listeners)
        for start in range(0, len(channels), SUBSCRIBE_CHUNK):
            await self.pubsub.subscribe(*channels[start:start + SUBSCRIBE_CHUNK])
        self.subscribed = True
        self.confirm()
        for inboxes in list(self.listeners.values()):
            for inbox in inboxes:
                inbox.put(GAP)
        log.warning("gateway hub: subscribed again to %d users; their connections catch up from PostgreSQL",
                    len(channels))

    def confirm(self) -> None:
        for done in self.unconfirmed:
            if done is not None and not done.done():  # its connection may have gone meanwhile
                done.set_result(None)
        self.unconfirmed.clear()

    async def healthy(self, timeout_s: float = 1.0) -> bool:
        """Redis answers and every connected user's channel is subscribed."""
        try:
            await asyncio.wait_for(self.redis.ping(), timeout_s)
        except (TimeoutError, redis.RedisError, OSError):
            return False
        return self.subscribed

    async def step(self) -> None:
        while not self.commands.empty():
            command, channel, done = self.commands.get_nowait()
            self.unconfirmed.append(done)
            await getattr(self.pubsub, command)(channel)
            self.confirm()
        if not self.pubsub.subscribed:
            await asyncio.sleep(0.01)
            return
        message = await self.pubsub.get_message(timeout=0.01)
        if message and message["type"] == "message":
            self.dispatch(message["channel"].decode(), message["data"])
            # A message already buffered comes back without suspending: under a flood the hub would
            # run alone and every sender fall BACKLOG behind. Let the senders run between messages.
            await asyncio.sleep(0)

    def dispatch(self, channel: str, data: bytes) -> None:
        event = json.loads(data)
        for inbox in list(self.listeners.get(channel, ())):
            inbox.put(event)
