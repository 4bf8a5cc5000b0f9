"""One client per thread: bytewax workers of one process are threads, and database and cache
connections must not be used by two threads at once."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class PerThread(Generic[T]):
    """Creates the client on first use in each thread, so a dataflow can be built without one."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self.factory = factory
        self._local = threading.local()

    def get(self) -> T:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self.factory()
        return client
