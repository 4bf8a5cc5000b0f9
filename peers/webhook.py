"""A webhook receiver that does what a careful customer does: verify the Standard Webhooks
signature and timestamp, and drop a webhook-id it has already processed."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook, WebhookVerificationError

from notifyflow.stack import free_port


class Server(ThreadingHTTPServer):
    # A delivery batch opens up to 100 connections at once; the default backlog of 5 resets them.
    request_queue_size = 128
    # Senders keep connections open between batches: stopping must not wait for them to hang up.
    daemon_threads, block_on_close = True, False


class WebhookReceiver:
    def __init__(self, secret: str = "whsec_" + "bm90aWZ5Zmxvdy10ZXN0LXNlY3JldC0zMmJ5dGVzIQ==") -> None:
        self.secret = secret
        self.received: list[dict] = []  # verified, first delivery of each webhook-id
        self.duplicates = 0
        self.rejected = 0
        self._seen: set[str] = set()
        self._failures: list[tuple[int, str | None]] = []
        self._down_until, self._hang_s, self._hang_every, self._requests_while_down = 0.0, 0.0, 1, 0
        self._lock = threading.Lock()
        self.server = Server(("127.0.0.1", free_port()), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks"

    def fail(self, status: int, times: int, retry_after: str | None = None) -> None:
        """Answer the next `times` requests with `status`, as an overloaded or broken receiver would."""
        with self._lock:
            self._failures += [(status, retry_after)] * times

    def outage(self, seconds: float, hang_every: int = 3, hang_s: float = 11.0) -> None:
        """Down for `seconds`: 503 to every request, except that every `hang_every`-th one hangs for
        `hang_s` (longer than a client's timeout) before its 503, as an overloaded service does."""
        with self._lock:
            self._down_until, self._hang_s, self._hang_every = time.monotonic() + seconds, hang_s, hang_every

    def wait_for(self, count: int, timeout_s: float = 30.0) -> list[dict]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.05)
        raise AssertionError(f"webhook receiver got {len(self.received)} of {count}")

    def _handler(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as customers' servers do

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver._lock:
                    if time.monotonic() < receiver._down_until:
                        receiver._requests_while_down += 1
                        hang = receiver._requests_while_down % receiver._hang_every == 0
                        failure = (503, None, receiver._hang_s if hang else 0.0)
                    elif receiver._failures:
                        failure = (*receiver._failures.pop(0), 0.0)
                    else:
                        failure = None
                if failure:
                    status, retry_after, hang_s = failure
                    time.sleep(hang_s)
                    try:
                        self.send_response(status)
                        if retry_after:
                            self.send_header("retry-after", retry_after)
                        self.send_header("content-length", "0")
                        self.end_headers()
                    except ConnectionError:  # the client gave up waiting, as it should
                        pass
                    return
                try:
                    Webhook(receiver.secret).verify(body, dict(self.headers.items()))
                except WebhookVerificationError:
                    with receiver._lock:
                        receiver.rejected += 1
                    self.send_response(401)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                with receiver._lock:
                    webhook_id = self.headers["webhook-id"]
                    if webhook_id in receiver._seen:
                        receiver.duplicates += 1
                    else:
                        receiver._seen.add(webhook_id)
                        receiver.received.append({"id": webhook_id, "body": json.loads(body)})
                self.send_response(204)
                self.end_headers()  # 204: no body, so no content-length either

            def log_message(self, *_):  # quiet: tests read the records, not the access log
                pass

        return Handler

    def __enter__(self) -> WebhookReceiver:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_) -> None:
        self.server.shutdown()
        self.server.server_close()
