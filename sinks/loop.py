"""The event loop the providers' sends run on: one per process, in a thread of its own, for as long
as the process lives.

The delivery engine is called synchronously (a bytewax step, one call per batch, possibly from
several worker threads). Running each batch under a fresh `asyncio.run` made every batch build an
event loop, a thread pool and new client connections (TCP, TLS, HTTP/2), and closed them again;
on a long-lived loop the providers keep their clients, so connections and pools live across
batches. `run(coroutine)` hands a batch's coroutine to the loop and waits for its result; calls
from several threads run concurrently on it.

Clients belong to the loop they were made on: `LoopBound` keeps one per loop, so a provider used
under another loop (a test's own `asyncio.run`) gets a client of its own there, and closes them
when the provider is let go.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None


def loop() -> asyncio.AbstractEventLoop:
    """The process's delivery loop, started on first use."""
    global _loop, _thread
    with _lock:
        if _loop is None or not _thread.is_alive():
            _loop = asyncio.new_event_loop()
            _thread = threading.Thread(target=_loop.run_forever, name="delivery-loop", daemon=True)
            _thread.start()
        return _loop


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run the coroutine on the delivery loop and return its result (or raise its exception)."""
    if threading.current_thread() is _thread:
        coroutine.close()
        raise RuntimeError("sinks.loop.run() called from the delivery loop itself: await the coroutine instead")
    return asyncio.run_coroutine_threadsafe(coroutine, loop()).result()


def _forget_after_fork() -> None:
    """A forked child has no loop thread: it starts its own on first use."""
    global _loop, _thread, _lock
    _loop, _thread, _lock = None, None, threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)


class LoopBound(Generic[T]):
    """One client (session, connection pool) per running event loop, made on first use there.

    `LoopBound(make, close)`: `bound.get()`, called on a loop, returns that loop's client, calling
    `make()` the first time. Clients of loops that have since closed are dropped (their connections
    went with their loop); when the LoopBound itself is collected, `close(client)` (a coroutine
    function) runs on each live loop, so a provider that is let go closes its connections."""

    def __init__(self, make: Callable[[], T], close: Callable[[T], Coroutine] | None = None) -> None:
        self.make = make
        self._made: dict[asyncio.AbstractEventLoop, T] = {}
        self._lock = threading.Lock()
        if close is not None:
            weakref.finalize(self, _close_all, self._made, close)

    def get(self) -> T:
        running = asyncio.get_running_loop()
        client = self._made.get(running)
        if client is None:
            with self._lock:
                for closed in [loop for loop in self._made if loop.is_closed()]:
                    del self._made[closed]
                client = self._made[running] = self.make()
        return client


def _close_all(made: dict, close: Callable[[Any], Coroutine]) -> None:
    for owner, client in list(made.items()):
        if owner.is_running():
            asyncio.run_coroutine_threadsafe(close(client), owner)
