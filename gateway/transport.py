"""The WebSocket transport the gateway runs on: uvicorn's websockets-sansio protocol, with a bound
on what a peer that stops reading can hold, and less kept alive per idle connection.

uvicorn stops the app's sends while the transport's write buffer is above its high-water mark
(64 KiB), so a stalled peer holds at most that (plus the kernel's socket buffer, the inbox's
BACKLOG events and one frame). But nothing ever ends such a connection: the send waits forever,
and a close waits forever to flush. Here a peer that has not drained the buffer for STALL_S, or
that is closed while it does not drain, is dropped (the socket aborted), so it costs nothing more.

An idle connection is most of a gateway's memory (bench.gateway): the parsed handshake request
and response are dropped once the connection is open, and asyncio's Queue and Event (three
deques and an Event, ~2 KB) are replaced by a list and one future, which is all one reader needs.
"""

from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import Protocol

from gateway.one_reader import OneReader

log = logging.getLogger(__name__)
STALL_S = 10.0  # a peer that has not drained its buffer below the low-water mark for this long is dropped
GRACE_S = 5.0  # after a close it did not answer (keepalive timeout, close handshake), the socket is aborted


class Mailbox(OneReader):
    """The part of asyncio.Queue the protocol uses (put_nowait, get, empty), for one reader."""

    __slots__ = ()

    def put_nowait(self, item) -> None:
        self.items.append(item)
        self.wake()

    def empty(self) -> bool:
        return not self.items

    async def get(self):
        await self.wait()
        return self.items.pop(0)


class Flag:
    """The part of asyncio.Event the protocol uses (set, clear, is_set, wait), without its deque."""

    __slots__ = ("value", "waiters")

    def __init__(self) -> None:
        self.value, self.waiters = True, None

    def is_set(self) -> bool:
        return self.value

    def set(self) -> None:
        self.value = True
        for waiter in self.waiters or ():
            if not waiter.done():
                waiter.set_result(None)
        self.waiters = None

    def clear(self) -> None:
        self.value = False

    async def wait(self) -> None:
        while not self.value:
            waiter = asyncio.get_running_loop().create_future()
            self.waiters = [*(self.waiters or ()), waiter]
            await waiter


class BoundedWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's `ws` protocol class for the gateway (gateway.app SERVER_OPTIONS)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.queue = Mailbox()
        self.writable = Flag()
        self.stall_timer: asyncio.TimerHandle | None = None
        self.parser_untouched = False

    def pause_writing(self) -> None:
        super().pause_writing()
        if self.stall_timer is None:
            self.stall_timer = self.loop.call_later(STALL_S, self.drop, "stopped reading")

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.stall_timer is not None:
            self.stall_timer.cancel()
            self.stall_timer = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.stall_timer is not None:
            self.stall_timer.cancel()
            self.stall_timer = None
        super().connection_lost(exc)

    def drop(self, why: str) -> None:
        """Abort the socket: what it still buffers is discarded, and connection_lost follows."""
        self.stall_timer = None
        if not self.transport.is_closing() or self.transport.get_write_buffer_size():
            log.warning("dropping a WebSocket whose peer %s (%d bytes unsent)", why,
                        self.transport.get_write_buffer_size())
        self.transport.abort()

    def handle_connect(self, event) -> None:
        # Nothing after the request: the frame parser has read nothing yet and may be replaced.
        self.parser_untouched = not self.conn.reader.buffer
        super().handle_connect(event)

    def data_received(self, data: bytes) -> None:
        if self.handshake_initiated:
            self.parser_untouched = False
        super().data_received(data)

    async def send(self, message) -> None:
        if message["type"] == "websocket.close" and not self.writable.is_set() and not self.disconnected:
            self.drop("does not read, not even its close")
            return
        await super().send(message)
        if message["type"] == "websocket.accept":
            self.forget_handshake()
        elif message["type"] == "websocket.close" and self.close_timer is not None:
            # uvicorn closes (flushing first) if the close is not answered; a peer that does not read never is.
            self.close_timer.cancel()
            self.close_timer = self.loop.call_later(self.close_timeout, self.drop, "did not answer its close")

    def keepalive_timeout(self) -> None:
        super().keepalive_timeout()
        self.loop.call_later(GRACE_S, self.drop, "did not answer pings")

    def shutdown(self) -> None:
        super().shutdown()  # the server stopping: it waits for every connection to be gone
        self.loop.call_later(GRACE_S, self.drop, "did not take the server's close")

    def forget_handshake(self) -> None:
        """The request and response are only needed for the handshake. The frame parser still holds
        the request (a local of websockets' handshake parser): replace it with a parser of frames,
        which is where that one stands, when nothing has been read since the request."""
        self.request = self.response = None
        if self.parser_untouched and not self.conn.reader.buffer:
            self.conn.reader.buffer = bytearray()
            self.conn.parser = Protocol.parse(self.conn)
            next(self.conn.parser)
