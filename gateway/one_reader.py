"""A list that one coroutine reads and others append to, waking the reader.

The gateway keeps one per connection (hub.Inbox) and one per WebSocket protocol (transport.Mailbox),
so it is kept small: a list and, only while the reader waits, a future. asyncio.Queue adds a deque
and two deques of waiters to every connection.
"""

from __future__ import annotations

import asyncio


class OneReader:
    __slots__ = ("items", "waiter")

    def __init__(self) -> None:
        self.items: list = []
        self.waiter: asyncio.Future | None = None

    def wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def wait(self) -> None:
        """Until there is at least one item."""
        while not self.items:
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
