"""A local protocol peer (peers/) in a process of its own, so the benchmarks' senders do not share
their CPU and GIL with the server they send to.

    python -m bench.peer <kind>        # kind: webhook, fcm, apns, webpush, smtp, aws

The peer starts, writes one JSON line to stdout saying how to reach it (its URL or port, and the
keys a sender needs), then answers one JSON line per JSON command read from stdin:

    {"op": "count"}                        -> {"received": n, "rejected": n, ...} what it recorded
    {"op": "subscribe", "key": <b64url>}   -> a Web Push subscription (webpush)
    {"op": "verify", "address": <email>}   -> {} the address is a verified SES sender (aws)

and stops when stdin closes. `PeerProcess` is the sender's side.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 60.0


# -- the peer's side ---------------------------------------------------------------------------


@contextlib.contextmanager
def serve(kind: str):
    """(details, count(), extra commands) for a started peer of `kind`."""
    if kind == "webhook":
        from peers.webhook import WebhookReceiver

        with WebhookReceiver() as peer:
            yield ({"url": peer.url, "secret": peer.secret},
                   lambda: {"received": len(peer.received), "rejected": peer.rejected,
                            "duplicates": peer.duplicates}, {})
    elif kind in ("fcm", "apns", "webpush"):
        from peers.apns import ApnsService
        from peers.fcm import FcmService
        from peers.webpush import WebPushService

        with {"fcm": FcmService, "apns": ApnsService, "webpush": WebPushService}[kind]() as peer:
            details = {"url": peer.url}
            if kind == "fcm":
                details.update(project_id=peer.project_id, service_account=peer.service_account())
            elif kind == "apns":
                details.update(key_id=peer.key_id, team_id=peer.team_id, bundle_id=peer.bundle_id,
                               private_key_pem=peer.private_key_pem, ca_pem_path=peer.ca_pem_path)
            commands = {"subscribe": lambda command: peer.subscribe(command.get("key"))} if kind == "webpush" else {}
            yield details, lambda: {"received": len(peer.received), "rejected": len(peer.rejected)}, commands
    elif kind == "smtp":
        from peers.smtp import SmtpServer

        with SmtpServer() as peer:
            yield {"host": peer.host, "port": peer.port}, lambda: {"received": len(peer.messages), "rejected": 0}, {}
    elif kind == "aws":
        from peers.aws import MotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
        with MotoServer() as peer:
            yield ({"endpoint_url": peer.endpoint_url},
                   lambda: {"ses": len(peer.sent_emails()), "sns": len(peer.sent_sms()), "rejected": 0},
                   {"verify": lambda command: peer.verify_email_identity(command["address"]) or {}})
    else:
        raise SystemExit(f"no peer called {kind!r}; peers: webhook, fcm, apns, webpush, smtp, aws")


def main() -> None:
    kind = sys.argv[1] if len(sys.argv) > 1 else ""
    # Our answers own stdout; anything a library prints goes to stderr.
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    with serve(kind) as (details, count, commands):
        answers.write(json.dumps(details) + "\n")
        for line in sys.stdin:
            command = json.loads(line)
            op = command["op"]
            try:
                answer = count() if op == "count" else commands[op](command)
            except Exception as error:  # noqa: BLE001 -- the sender reports it
                answer = {"error": f"{type(error).__name__}: {error}"}
            answers.write(json.dumps(answer) + "\n")


# -- the sender's side -------------------------------------------------------------------------


class PeerError(RuntimeError):
    pass


class PeerProcess:
    """`with PeerProcess("fcm") as peer:` starts the peer in its own process; `peer.details` says
    how to reach it, `peer.call("count")` asks it what it recorded."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.details: dict = {}
        self.process: subprocess.Popen | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> PeerProcess:
        self.process = subprocess.Popen([sys.executable, "-m", "bench.peer", self.kind], cwd=REPO, text=True,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.details = self._read(START_TIMEOUT_S)
        return self

    @property
    def pid(self) -> int:
        return self.process.pid

    def call(self, op: str, **args) -> dict:
        with self._lock:
            self.process.stdin.write(json.dumps({"op": op, **args}) + "\n")
            self.process.stdin.flush()
            answer = self._read(60.0)
        if "error" in answer:
            raise PeerError(f"{self.kind} peer: {op}: {answer['error']}")
        return answer

    def _read(self, timeout: float) -> dict:
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(self.process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not result or not result[0]:
            raise PeerError(f"the {self.kind} peer (pid {self.process.pid}) did not answer "
                            f"(exit code {self.process.poll()})")
        return json.loads(result[0])

    def __exit__(self, *exc) -> None:
        if self.process is None:
            return
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


if __name__ == "__main__":
    main()
