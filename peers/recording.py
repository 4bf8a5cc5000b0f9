"""What a peer accepted and refused, readable from the test thread while the peer serves."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from notifyflow.stack import free_port


class Recording:
    """Base of the provider peers: `_received` and `_rejected` guarded by one condition."""

    noun = "messages"  # what the peer receives, for timeout messages

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._received: list[dict] = []
        self._rejected: list[dict] = []

    @property
    def received(self) -> list[dict]:
        """Accepted requests, in arrival order (each peer documents its record's fields)."""
        with self._lock:
            return list(self._received)

    @property
    def rejected(self) -> list[dict]:
        """Refused requests, so tests can count retries."""
        with self._lock:
            return list(self._rejected)

    def wait_for(self, n: int, timeout: float = 5.0) -> list[dict]:
        with self._lock:
            if not self._lock.wait_for(lambda: len(self._received) >= n, timeout):
                raise TimeoutError(f"{type(self).__name__} got {len(self._received)} {self.noun}, expected {n}")
            return list(self._received)


class PeerHandler(BaseHTTPRequestHandler):
    """The peers' request handler: keep-alive, as the senders' pooled clients expect, and each
    answer in one segment. http.server writes the status and headers in one send and the body in
    another; Nagle then holds the body until the client ACKs the headers, which a client that
    delays its ACKs does 40 ms later: FCM's JSON answers came 40 ms late, capping a sender with 20
    connections at 425 sends/s (1,873/s once fixed). Buffered, the answer goes out in one send at
    the end of the request (handle_one_request flushes), and no delay applies to what remains."""

    protocol_version = "HTTP/1.1"
    wbufsize, disable_nagle_algorithm = -1, True

    def log_message(self, *args) -> None:  # keep test output clean; received/rejected tell the story
        pass


class _Server(ThreadingHTTPServer):
    # A sender opens a connection per concurrent request (firebase-admin, pywebpush: hundreds at
    # once); the default backlog of 5 drops their SYNs, and each dropped one waits a second or more.
    request_queue_size = 1024
    # Senders keep connections open between batches: stopping must not wait for them to hang up.
    daemon_threads, block_on_close = True, False


class HttpPeer(Recording):
    """A recording peer serving plain HTTP on a free loopback port; handlers reach it as `server.peer`."""

    handler: type[BaseHTTPRequestHandler]

    def __init__(self) -> None:
        super().__init__()
        self.host, self.port = "127.0.0.1", 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self):
        self.port = free_port()
        self._server = _Server((self.host, self.port), self.handler)
        self._server.peer = self
        # A short poll so stop() returns promptly.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True,
                                        name=f"{type(self).__name__}-peer")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
