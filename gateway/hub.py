"""Fan-out inside one gateway process: one Redis subscription per user that has a connection
here, shared by all of that user's connections (devices, tabs). Gateways scale out behind
Redis pub/sub: each subscribes only to the users connected to it."""

from __future__ import annotations

import asyncio
import json
import logging

import redis.asyncio as aioredis

from connectors.redis import user_channel

log = logging.getLogger(__name__)
QUEUE_SIZE = 1000  # a connection this far behind is too slow to keep; it reconnects and replays
RESYNC = {"event": "resync"}


class Hub:
    def __init__(self, redis_url: str) -> None:
        self.redis = aioredis.from_url(redis_url)
        self.pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        self.listeners: dict[str, set[asyncio.Queue]] = {}
        # The PubSub connection is not safe for concurrent use: only the reader task touches it.
        self.commands: asyncio.Queue = asyncio.Queue()
        self.task: asyncio.Task | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self.run())

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.pubsub.aclose()
        await self.redis.aclose()

    async def subscribe(self, user: str) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue(QUEUE_SIZE)
        if user not in self.listeners:
            self.listeners[user] = set()
            done = asyncio.get_running_loop().create_future()
            await self.commands.put(("subscribe", user, done))
            try:
                await done  # live from here on
            except asyncio.CancelledError:  # the connection went away while subscribing
                if not self.listeners.get(user):
                    self.listeners.pop(user, None)
                    await self.commands.put(("unsubscribe", user, None))
                raise
        self.listeners.setdefault(user, set()).add(queue)
        return queue

    async def unsubscribe(self, user: str, queue: asyncio.Queue) -> None:
        listeners = self.listeners.get(user, set())
        listeners.discard(queue)
        if not listeners and user in self.listeners:
            del self.listeners[user]
            await self.commands.put(("unsubscribe", user, None))

    async def publish(self, user: str, event: dict) -> None:
        await self.redis.publish(user_channel(user), json.dumps(event))

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
            command, user, done = self.commands.get_nowait()
            await getattr(self.pubsub, command)(user_channel(user))
            if done is not None and not done.done():  # its connection may have gone meanwhile
                done.set_result(None)
        if not self.pubsub.subscribed:
            await asyncio.sleep(0.01)
            return
        message = await self.pubsub.get_message(timeout=0.01)
        if message and message["type"] == "message":
            self.dispatch(message["channel"].decode().removeprefix("user:"), message["data"])

    def dispatch(self, user: str, data: bytes) -> None:
        event = json.loads(data)
        for queue in list(self.listeners.get(user, ())):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                # Too far behind: drop what it has not read; it reconnects and replays from its last event.
                log.warning("a connection of user %s fell %d events behind; asking it to resync", user, QUEUE_SIZE)
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(RESYNC)
