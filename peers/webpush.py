"""A local Web Push service: RFC 8030 delivery, RFC 8292 VAPID checks, RFC 8291 aes128gcm decryption.

    with WebPushService() as push:
        subscription = push.subscribe()          # {"id", "endpoint", "p256dh", "auth"}
        pywebpush.webpush(subscription_info(subscription), data=..., vapid_private_key=...,
                          vapid_claims={"sub": "mailto:ops@example.com"})
        push.wait_for(1)[0]["payload"]          # the decrypted bytes

The service plays both sides a real push needs: the push service that checks the request, and the
browser that holds the subscription's private key and auth secret, so it can prove the payload was
encrypted for that browser. `.fail(...)` and `.unsubscribe(...)` inject the answers a push service
decides on its side (410 Gone, 429 with Retry-After, 503, ...).
"""

from __future__ import annotations

import base64
import re
import secrets
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

import http_ece
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from peers.recording import HttpPeer, PeerHandler

MAX_PAYLOAD_BYTES = 4096  # RFC 8030 7.2: services must accept 4096 bytes and may refuse more (413)
MAX_VAPID_LIFETIME_S = 24 * 3600  # RFC 8292 2: exp must be no more than 24 hours ahead
CLOCK_SKEW_S = 60
URGENCIES = {"very-low", "low", "normal", "high"}  # RFC 8030 5.3
TOPIC = re.compile(r"[A-Za-z0-9_-]{1,32}")  # RFC 8030 5.4: at most 32 base64url characters


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def subscription_info(subscription: dict) -> dict:
    """The PushSubscription JSON a browser hands out, the shape pywebpush's `subscription_info` wants."""
    return {"endpoint": subscription["endpoint"],
            "keys": {"p256dh": subscription["p256dh"], "auth": subscription["auth"]}}


class PushRejected(Exception):
    """A push the service refuses: the HTTP status, a reason for the body and extra headers."""

    def __init__(self, status: int, reason: str, headers: dict | None = None):
        super().__init__(f"{status} {reason}")
        self.status, self.reason, self.headers = status, reason, headers or {}


class WebPushService(HttpPeer):
    """A push service on 127.0.0.1; each subscription is a browser whose keys the service holds."""

    noun = "pushes"  # each received record: {"subscription", "payload", "ttl", "urgency", "topic", "vapid_sub"}

    @property
    def handler(self) -> type[BaseHTTPRequestHandler]:
        return _Handler

    def __init__(self):
        super().__init__()
        self._subscriptions: dict[str, dict] = {}  # id -> {"key": private key, "auth", "server_key"}
        self._gone: set[str] = set()
        self._failures: dict[str, list] = {}  # id -> [status, remaining times or None, retry_after]

    # -- lifecycle -------------------------------------------------------------------------------


    # -- subscriptions, injection and inspection --------------------------------------------------

    def subscribe(self, application_server_key: str | None = None) -> dict:
        """A fresh subscription, as `pushManager.subscribe()` would create in a browser.

        With `application_server_key` (the b64url public VAPID key, as a browser passes it) the
        subscription is restricted: pushes signed with any other key are refused with 403.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        auth = secrets.token_bytes(16)
        subscription_id = secrets.token_urlsafe(16)
        public = key.public_key().public_bytes(serialization.Encoding.X962,
                                               serialization.PublicFormat.UncompressedPoint)
        with self._lock:
            self._subscriptions[subscription_id] = {"key": key, "auth": auth, "server_key": application_server_key}
        return {"id": subscription_id, "endpoint": f"{self.url}/push/{subscription_id}",
                "p256dh": b64url(public), "auth": b64url(auth)}

    def unsubscribe(self, subscription_id: str) -> None:
        """From now on the endpoint answers 410 Gone, as after the user revoked permission."""
        with self._lock:
            self._gone.add(subscription_id)

    def fail(self, subscription_id: str, status: int, times: int | None = None,
             retry_after: int | None = None) -> None:
        """Answer `status` to the next `times` pushes (None: every push, 0: stop failing).

        `retry_after` (seconds) is sent as Retry-After, as push services do with 429 and 503.
        """
        with self._lock:
            if times == 0:
                self._failures.pop(subscription_id, None)
            else:
                self._failures[subscription_id] = [status, times, retry_after]


    # -- one push ---------------------------------------------------------------------------------

    def _accept(self, subscription_id: str, headers, body: bytes) -> dict:
        """Check one push the way a push service does and decrypt it as the browser; raise PushRejected."""
        with self._lock:
            subscription = self._subscriptions.get(subscription_id)
            if subscription is None:
                raise PushRejected(404, "no such subscription")
            if subscription_id in self._gone:
                raise PushRejected(410, "subscription expired or unsubscribed")
            failure = self._failures.get(subscription_id)
            if failure is not None:
                status, times, retry_after = failure
                if times is not None:
                    failure[1] -= 1
                    if failure[1] <= 0:
                        del self._failures[subscription_id]
                extra = {"Retry-After": str(retry_after)} if retry_after is not None else {}
                raise PushRejected(status, "injected failure", extra)

        vapid_sub = self._check_vapid(headers.get("Authorization"), subscription["server_key"])

        ttl = headers.get("TTL")
        if ttl is None or not ttl.isdigit():
            raise PushRejected(400, "TTL header missing or not a non-negative integer")
        urgency, topic = headers.get("Urgency"), headers.get("Topic")
        if urgency is not None and urgency not in URGENCIES:
            raise PushRejected(400, f"bad Urgency {urgency!r}")
        if topic is not None and not TOPIC.fullmatch(topic):
            raise PushRejected(400, "Topic must be at most 32 base64url characters")

        payload = b""
        if body:  # RFC 8030 allows pushes without a payload; ones with a payload must be aes128gcm
            if headers.get("Content-Encoding") != "aes128gcm":
                raise PushRejected(415, "payload must use Content-Encoding: aes128gcm")
            if len(body) > MAX_PAYLOAD_BYTES:
                raise PushRejected(413, "payload too large")
            try:
                payload = http_ece.decrypt(body, private_key=subscription["key"],
                                           auth_secret=subscription["auth"], version="aes128gcm")
            except Exception as error:  # http_ece raises several types for undecryptable bodies
                raise PushRejected(400, f"cannot decrypt payload: {error}") from None
        return {"subscription": subscription_id, "payload": payload, "ttl": int(ttl),
                "urgency": urgency, "topic": topic, "vapid_sub": vapid_sub}

    def _check_vapid(self, authorization: str | None, server_key: str | None) -> str:
        """Verify `vapid t=<JWT>, k=<key>` (RFC 8292) and return the JWT's `sub`.

        RFC 8292 4.2: absent authentication is 401, invalid authentication is 403. This peer insists
        on VAPID for every subscription (as Apple's push service does), since our senders always sign.
        """
        scheme, _, params = (authorization or "").partition(" ")
        if scheme.lower() != "vapid":
            raise PushRejected(401, "missing VAPID authorization")
        fields = dict(part.strip().partition("=")[::2] for part in params.split(","))
        token, key_text = fields.get("t"), fields.get("k")
        if not token or not key_text:
            raise PushRejected(401, "VAPID authorization needs t= and k=")
        try:
            raw_key = b64url_decode(key_text)
            if server_key is not None and raw_key != b64url_decode(server_key):
                raise PushRejected(403, "VAPID key is not the subscription's application server key")
            public_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw_key)
            claims = jwt.decode(token, public_key, algorithms=["ES256"], audience=self.url,
                                options={"require": ["aud", "exp", "sub"]})
        except (ValueError, jwt.PyJWTError) as error:  # bad point, bad signature, wrong aud, expired
            raise PushRejected(403, f"invalid VAPID token: {error}") from None
        if claims["exp"] > time.time() + MAX_VAPID_LIFETIME_S + CLOCK_SKEW_S:
            raise PushRejected(403, "VAPID exp is more than 24 hours ahead")
        sub = claims["sub"]
        if not isinstance(sub, str) or not sub.startswith(("mailto:", "https:")):
            raise PushRejected(403, "VAPID sub must be a mailto: or https: URI")
        return sub

    def _handle(self, path: str, headers, body: bytes) -> tuple[int, dict, bytes]:
        match = re.fullmatch(r"/push/([A-Za-z0-9_-]+)", urlsplit(path).path)
        if match is None:
            return 404, {}, b"not found"
        subscription_id = match.group(1)
        try:
            message = self._accept(subscription_id, headers, body)
        except PushRejected as rejected:
            with self._lock:
                self._rejected.append({"subscription": subscription_id, "status": rejected.status,
                                       "reason": rejected.reason})
            return rejected.status, rejected.headers, rejected.reason.encode()
        message_id = secrets.token_urlsafe(12)
        with self._lock:
            self._received.append(message)
            self._lock.notify_all()
        # RFC 8030 5: 201 Created, Location names the push message resource
        return 201, {"Location": f"{self.url}/message/{message_id}"}, b""


class _Handler(PeerHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, headers, content = self.server.peer._handle(self.path, self.headers, body)
        self._send(status, headers, content)

    def do_GET(self) -> None:
        self._send(405, {"Allow": "POST"}, b"push with POST")

    def _send(self, status: int, headers: dict, content: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)
