"""Web Push (RFC 8030 + VAPID, payloads encrypted with aes128gcm) through pywebpush, to browsers.

A batch goes out concurrently on the delivery loop, over one kept aiohttp session (sinks/http.py).
Each payload is encrypted for its browser with a fresh ECDH key (RFC 8291: that work is per message);
the VAPID token (RFC 8292) is signed once per push service and reused while it has hours to live,
as the RFC allows, instead of once per message. The payload is the JSON our service worker hands to
`showNotification`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import struct
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from py_vapid import Vapid
from pywebpush import WebPusher, WebPushException

from sinks.engine import Result, Send
from sinks.http import no_answer, session_per_loop, timeouts
from sinks.jobs import presentation
from sinks.retry import parse_retry_after

DEFAULT_SUBJECT = "mailto:ops@notifyflow.local"
DEFAULT_TTL_S = 86400
TIMEOUT_S = 10.0
# A VAPID token lives 12 hours (pywebpush's choice; RFC 8292 allows up to 24) and is signed again
# once it has been used for one.
VAPID_LIFETIME_S = 12 * 3600
VAPID_REUSE_S = 3600
# Push services must take 4096 bytes of encrypted body; aes128gcm adds 103 (header, tag, padding
# delimiter), and the rest is headroom.
MAX_PAYLOAD_BYTES = 3800
MAX_ACTIONS = 2  # what Chrome and Firefox show (Notification.maxActions)
ELLIPSIS = "…"
VIBRATION_PATTERN_MS = (200, 100, 200)  # buzz, pause, buzz, on devices that vibrate
P256 = ec.SECP256R1()
RECORD_SIZE = 4096  # http_ece's default, so one record holds any payload we send
GONE = {404, 410}  # the subscription expired or the user revoked permission
# Worth another try: the push service is busy or down, not refusing this message.
TRANSIENT_STATUSES = {408, 425, 429, 500, 502, 503, 504}


def urgency(job: dict) -> str:
    """RFC 8030 Urgency: phones wake for high, and hold back low until charging or on wifi."""
    if job["priority"] in ("high", "critical"):
        return "high"
    return "low" if job["lane"] == "bulk" else "normal"


def topic(collapse_key: str) -> str:
    """RFC 8030 Topic (at most 32 base64url characters): a pending message with the same topic is
    replaced, so a merge update supersedes the original. Hashed, so the push service sees no content."""
    return base64.urlsafe_b64encode(hashlib.sha256(collapse_key.encode()).digest()).decode()[:32]


def ttl_seconds(job: dict, now: datetime) -> int:
    if job["expires_at"] is None:
        return DEFAULT_TTL_S
    return max(0, int((job["expires_at"] - now).total_seconds()))


def alerting(wanted: Mapping) -> dict:
    """The showNotification options for the user's sound and vibration. The Notifications API has
    one switch for both (`silent`), and browsers refuse a vibration pattern beside it: with only one
    of them off, sound still plays (vibration on), or the browser may still vibrate by default (sound on)."""
    if wanted["vibration"]:
        return {"vibrate": VIBRATION_PATTERN_MS}
    return {} if wanted["sound"] else {"silent": True}


def notification(job: dict) -> dict:
    """What the service worker shows: `showNotification(title, options)` plus the data it acts on."""
    shown = {"title": job["title"], "body": job["body"], "icon": job["icon"], "image": job["image_url"],
             "badge": job["badge"], "tag": job["collapse_key"],
             "data": {key: value for key, value in (("notification_id", job["notification_id"]),
                                                    ("url", job["deep_link"]), ("category", job["category"]))
                      if value is not None},
             "actions": [{"action": action["id"], "title": action["title"]} for action in job["actions"][:MAX_ACTIONS]],
             "renotify": job["revision"] > 0,  # a merge update alerts again instead of replacing silently
             "requireInteraction": job["priority"] == "critical", **alerting(presentation(job))}
    return {key: value for key, value in shown.items() if value is not None}


def encode(shown: dict) -> str:
    return json.dumps(shown, separators=(",", ":"), ensure_ascii=False)


def fits(shown: dict) -> bool:
    return len(encode(shown).encode()) <= MAX_PAYLOAD_BYTES


def shorten(shown: dict, field: str, size: int) -> dict:
    """`field` cut to its first `size` UTF-8 bytes (never half a character), with an ellipsis."""
    kept = shown[field].encode()[:size].decode(errors="ignore")
    return {**shown, field: kept + ELLIPSIS if kept else ""}


def fit(shown: dict) -> str:
    """The JSON, with the body (then the title) cut as little as needed to fit in one push."""
    for field in ("body", "title"):
        text = encode(shown)  # once, for the check and the answer: most payloads fit as they are
        if len(text.encode()) <= MAX_PAYLOAD_BYTES:
            return text
        # The longest prefix that fits; a search, since JSON escapes make bytes and characters differ.
        low, high = 0, len(shown[field].encode())
        while low < high:
            middle = (low + high + 1) // 2
            low, high = (middle, high) if fits(shorten(shown, field, middle)) else (low, middle - 1)
        shown = shorten(shown, field, low)
    return encode(shown)


def render_webpush(job: dict, now: datetime | None = None) -> tuple[str, int, str, str]:
    """(JSON payload, TTL seconds, Urgency, Topic) for one push of the job."""
    return fit(notification(job)), ttl_seconds(job, now or datetime.now(UTC)), urgency(job), topic(job["collapse_key"])


def encrypt(payload: bytes, browser_key: bytes, auth_secret: bytes) -> bytes:
    """RFC 8291's aes128gcm body for one browser: a fresh ECDH key (RFC 8291 3.1), its HKDF steps as
    single HMAC-SHA-256 calls (each output fits one block), the payload in one record of RECORD_SIZE
    with the last-record delimiter and no padding, as http_ece writes it (RFC 8188 2)."""
    ours = ec.generate_private_key(P256)
    our_key = ours.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    shared = ours.exchange(ec.ECDH(), ec.EllipticCurvePublicKey.from_encoded_point(P256, browser_key))
    ikm = hmac.digest(hmac.digest(auth_secret, shared, "sha256"),
                      b"WebPush: info\x00" + browser_key + our_key + b"\x01", "sha256")
    salt = os.urandom(16)
    prk = hmac.digest(salt, ikm, "sha256")
    content_key = hmac.digest(prk, b"Content-Encoding: aes128gcm\x00\x01", "sha256")[:16]
    nonce = hmac.digest(prk, b"Content-Encoding: nonce\x00\x01", "sha256")[:12]
    header = salt + struct.pack("!IB", RECORD_SIZE, len(our_key)) + our_key
    return header + AESGCM(content_key).encrypt(nonce, payload + b"\x02", None)


class Pusher(WebPusher):
    """pywebpush's WebPusher (headers, the request, its errors) with the aes128gcm encryption of
    `encrypt`: http_ece's took 206 us of CPU a message, of which the ECDH agreement is 75 us, and the
    whole of pywebpush's preparation 240 us of the sender's ~675 us per push; `encrypt` takes ~140."""

    def encode(self, data: bytes, content_encoding: str = "aes128gcm") -> dict:
        if content_encoding != "aes128gcm":
            return super().encode(data, content_encoding)
        return {"body": encrypt(data, self.receiver_key, self.auth_key)}


def webpush_result(error: Exception, now: datetime) -> Result:
    """A failed push as the engine's outcome."""
    if isinstance(error, requests.RequestException):  # no answer: connection refused, timeout, reset
        return Result("transient", f"{type(error).__name__}: {error}")
    if isinstance(error, (aiohttp.ClientError, TimeoutError)):  # likewise, from our aiohttp session
        return Result("transient", no_answer(error))
    status = error.status_code if isinstance(error, WebPushException) else None
    if status is None:  # pywebpush refused before sending, e.g. subscription keys it cannot encrypt for
        return Result("permanent", f"cannot push: {type(error).__name__}: {error}")
    reason = f"HTTP {status} from push service"
    if status in GONE:
        return Result("permanent", reason, state="token_invalid")
    if status in TRANSIENT_STATUSES or status >= 500:
        return Result("transient", reason, parse_retry_after(error.retry_after, now))
    return Result("permanent", reason)  # 400, 401/403 (VAPID), 413: resending the same push cannot help


def load_vapid_key(text: str) -> Vapid:
    """A P-256 private key as PEM, or in a form py_vapid reads (b64url raw 32 bytes or DER)."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_private_key(text.encode(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
                raise ValueError("VAPID keys are P-256 (prime256v1) EC keys")
            return Vapid(private_key=key)
        return Vapid.from_string(text)
    except (ValueError, TypeError, IndexError) as error:
        raise ValueError(f"VAPID private key is not a P-256 key in PEM, DER or raw form: {error}") from None


class WebPushProvider:
    name = "webpush"
    batch_size = 100

    def __init__(self, vapid: Vapid, subject: str = DEFAULT_SUBJECT,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        if not subject.startswith(("mailto:", "https:")):
            raise ValueError(f"VAPID_SUBJECT must be a mailto: or https: URI, not {subject!r}")
        self.vapid, self.subject, self.clock = vapid, subject, clock
        self.sessions = session_per_loop(TIMEOUT_S)
        self._vapid_headers: dict[str, tuple[float, dict[str, str]]] = {}  # audience -> (signed at, headers)
        self._vapid_lock = threading.Lock()

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> WebPushProvider:
        """VAPID_PRIVATE_KEY (PEM or b64url raw/DER) or VAPID_PRIVATE_KEY_FILE; VAPID_SUBJECT."""
        text = environ.get("VAPID_PRIVATE_KEY")
        if not text and (path := environ.get("VAPID_PRIVATE_KEY_FILE")):
            try:
                text = Path(path).read_text()
            except OSError as error:
                raise ValueError(f"VAPID_PRIVATE_KEY_FILE={path}: {error}") from None
        if not text:
            raise ValueError("VAPID_PRIVATE_KEY (or VAPID_PRIVATE_KEY_FILE) is not set: Web Push needs a VAPID key")
        return cls(load_vapid_key(text), environ.get("VAPID_SUBJECT") or DEFAULT_SUBJECT)

    @property
    def application_server_key(self) -> str:
        """The public key browsers pass to `pushManager.subscribe()` (b64url, uncompressed point)."""
        point = self.vapid.public_key.public_bytes(serialization.Encoding.X962,
                                                   serialization.PublicFormat.UncompressedPoint)
        return base64.urlsafe_b64encode(point).rstrip(b"=").decode()

    def targets(self, job: dict) -> list[dict | None]:
        return [device for device in job["devices"] if device["web_push"]]

    async def send(self, sends: list[Send]) -> list[Result]:
        now, session = self.clock(), self.sessions.get()
        return list(await asyncio.gather(*(self.push(session, send, now) for send in sends)))

    def vapid_headers(self, endpoint: str) -> dict[str, str]:
        """The Authorization header for the endpoint's push service (the JWT's `aud` is its origin)."""
        url = urlsplit(endpoint)
        audience, signed_now = f"{url.scheme}://{url.netloc}", time.time()
        with self._vapid_lock:
            signed_at, headers = self._vapid_headers.get(audience, (0.0, {}))
            if signed_now - signed_at >= VAPID_REUSE_S:
                headers = self.vapid.sign({"sub": self.subject, "aud": audience,
                                           "exp": int(signed_now) + VAPID_LIFETIME_S})
                self._vapid_headers[audience] = (signed_now, headers)
        return headers

    async def push(self, session: aiohttp.ClientSession, send: Send, now: datetime) -> Result:
        payload, ttl, urgency_, topic_ = render_webpush(send.job, now)
        subscription = send.device["web_push"]
        try:
            pusher = Pusher({"endpoint": subscription["endpoint"],
                             "keys": {"p256dh": subscription["p256dh"], "auth": subscription["auth"]}},
                            aiohttp_session=session)
            headers = {**self.vapid_headers(subscription["endpoint"]), "Urgency": urgency_, "Topic": topic_}
            response = await pusher.send_async(payload, headers, ttl=ttl, content_encoding="aes128gcm",
                                               timeout=timeouts(TIMEOUT_S))
            if response.status > 202:  # what pywebpush's one-call webpush() counts as failed
                raise WebPushException(f"Push failed: {response.status} {response.reason}", response=response)
        except Exception as error:  # noqa: BLE001 -- pywebpush raises several types; none may escape a batch
            return webpush_result(error, now)
        return Result("sent", provider_id=response.headers.get("Location"))
