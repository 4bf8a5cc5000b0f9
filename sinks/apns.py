"""iOS push through Apple's APNs provider API: one HTTP/2 POST per device, token authentication.

The `apns-id` is derived from the job and the device, so a retry carries the same id and Apple's
logs (and ours) tie every attempt to one notification.

The HTTP/2 client is curl_cffi's AsyncSession (libcurl: HTTP/2 framing, HPACK and TLS run outside
the interpreter, on the event loop's own sockets, with no thread of its own). httpx over the
pure-Python h2 spent about 1.45 ms of CPU per notification, 89 % of it in h2, hpack, httpcore and
httpx on bench.delivery's profile, so a process topped out near 700 sends/s. pyreqwest (Rust) spent
0.2 ms, but its runtime thread could abort a Python 3.11 process at exit after a failed connection
attempt (5 of 25 runs of a script exiting right after a refused connect); flows are stopped that way
in tests, including provider outages. curl_cffi spends 0.4-0.5 ms a send on bench.delivery, half of
it in curl_cffi's Python layer (setting the handle's options, parsing the answer).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from curl_cffi import CurlHttpVersion, CurlOpt
from curl_cffi.requests import AsyncSession
from curl_cffi.requests.exceptions import RequestException

from sinks.engine import Result, Send
from sinks.http import no_answer
from sinks.jobs import presentation
from sinks.loop import LoopBound
from sinks.retry import parse_retry_after

DEFAULT_URL = "https://api.push.apple.com"
TIMEOUT_S = 10.0
MAX_PAYLOAD_BYTES = 4096
MAX_COLLAPSE_ID_BYTES = 64
# Apple rejects provider tokens older than an hour, and refreshing more often than every 20
# minutes answers TooManyProviderTokenUpdates.
TOKEN_REFRESH_S = 50 * 60
STREAMS = 100  # requests in flight per connection: a batch's sends at once
APNS_ID_NAMESPACE = uuid.UUID("6f1c2d0e-4a7b-5c3e-9d21-8b4f0a6e2c17")
# Our provider token is refused for its age or refresh rate: a later attempt will do.
TOKEN_RETRY_REASONS = {"ExpiredProviderToken", "TooManyProviderTokenUpdates"}


def encode(payload: dict) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def action_category(actions: list[dict]) -> str | None:
    """The UNNotificationCategory the app registers for this set of buttons."""
    return "actions:" + ",".join(action["id"] for action in actions) if actions else None


def apns_id(job: dict, device: dict) -> str:
    return str(uuid.uuid5(APNS_ID_NAMESPACE, f"{job['job_id']}:{device['device_id']}"))


def collapse_id(key: str) -> str:
    """At most 64 bytes of UTF-8, never cutting a character in half."""
    return key.encode()[:MAX_COLLAPSE_ID_BYTES].decode("utf-8", "ignore")


def render_apns(job: dict, device: dict, topic: str) -> tuple[dict[str, str], dict]:
    """The request headers and JSON payload for one device; `topic` is the app's bundle id."""
    aps: dict = {"alert": {"title": job["title"], "body": job["body"]}}
    badge = job["badge"] or ""
    if badge.isascii() and badge.isdigit():
        aps["badge"] = int(badge)
    # Only urgent notifications ring, and only for a user who keeps push sound on. iOS has no
    # per-notification vibration switch: the device vibrates with the sound as its Sounds & Haptics
    # settings say, so the vibration preference has nothing to set here.
    if job["priority"] in {"high", "critical"} and presentation(job)["sound"]:
        aps["sound"] = "default"
    if category := action_category(job["actions"]):
        aps["category"] = category
    if job["image_url"]:
        aps["mutable-content"] = 1  # lets the notification service extension download the image
    aps["thread-id"] = job["category"]  # groups the notification with its kind in Notification Center
    if job["priority"] == "critical":
        aps["interruption-level"] = "time-sensitive"  # breaks through Focus; "critical" needs an entitlement
    payload = {"aps": aps, "notification_id": job["notification_id"], "payload": job["payload"]}
    if job["deep_link"]:
        payload["deep_link"] = job["deep_link"]
    if job["image_url"]:
        payload["image_url"] = job["image_url"]

    headers = {"apns-push-type": "alert", "apns-topic": topic, "apns-id": apns_id(job, device),
               # Priority 5 lets the device batch bulk sends to save power.
               "apns-priority": "5" if job["lane"] == "bulk" else "10",
               "apns-expiration": str(int(job["expires_at"].timestamp())) if job["expires_at"] else "0"}
    if collapse := collapse_id(job["collapse_key"]):
        headers["apns-collapse-id"] = collapse
    return headers, fit(payload)


def fit(payload: dict) -> dict:
    """Cut the body (then the title) with "…" until the payload is within Apple's 4 KB."""
    alert = payload["aps"]["alert"]
    for field in ("body", "title"):
        if len(encode(payload)) <= MAX_PAYLOAD_BYTES:
            break
        text, low, high = alert[field], 0, len(alert[field])
        while low < high:  # the longest prefix that fits; JSON escapes make bytes hard to predict
            mid = (low + high + 1) // 2
            alert[field] = text[:mid] + "…"
            if len(encode(payload)) <= MAX_PAYLOAD_BYTES:
                low = mid
            else:
                high = mid - 1
        alert[field] = text[:low].rstrip() + "…"
    return payload


def response_result(status: int, reason: str | None, retry_after: float | None, sent_id: str) -> Result:
    """Apple's answer as an outcome."""
    if status == 200:
        return Result("sent", provider_id=sent_id)
    described = f"{status} {reason or 'no reason'}"
    # Apple's word that the token will never work again (410: Unregistered or ExpiredToken).
    if status == 410 or (status, reason) == (400, "BadDeviceToken"):
        return Result("permanent", described, state="token_invalid")
    if status == 429 or status >= 500:
        return Result("transient", described, retry_after)
    if status == 403 and reason in TOKEN_RETRY_REASONS:
        return Result("transient", described)
    return Result("permanent", described, state="failed")


def apns_client(ca_file: str | None = None) -> AsyncSession:
    """An HTTP/2 client for APNs: one TLS connection (ALPN h2 only, as APNs speaks nothing else), every
    send a stream on it, up to `STREAMS` at once, each given `TIMEOUT_S` in all (connecting included);
    `ca_file` trusts a private CA (the local peer) instead of certifi's roots. PIPEWAIT makes a request
    wait for the connection being opened and multiplex on it: without it libcurl opened a connection
    per request of a batch (100 to the peer)."""
    return AsyncSession(verify=ca_file or True, http_version=CurlHttpVersion.V2_PRIOR_KNOWLEDGE,
                        timeout=TIMEOUT_S, max_clients=STREAMS, curl_options={CurlOpt.PIPEWAIT: 1})


def load_key(pem: str, variable: str) -> ec.EllipticCurvePrivateKey:
    # Keys pasted into .env files often arrive with literal "\n" for newlines.
    try:
        key = serialization.load_pem_private_key(pem.replace("\\n", "\n").encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{variable} is not a PEM private key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{variable} must be an EC (P-256) key, the .p8 key Apple issues")
    return key


class ApnsProvider:
    name = "apns"
    batch_size = STREAMS

    def __init__(self, *, key_id: str, team_id: str, bundle_id: str, private_key: ec.EllipticCurvePrivateKey,
                 url: str = DEFAULT_URL, ca_file: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.url, self.key_id, self.team_id, self.bundle_id = url.rstrip("/"), key_id, team_id, bundle_id
        self.private_key, self.clock, self.ca_file = private_key, clock, ca_file
        self._token: str | None = None
        self._issued_at = 0.0
        # One HTTP/2 connection per event loop, kept between batches: every send is a stream on it.
        self.clients = LoopBound(lambda: apns_client(ca_file), close=AsyncSession.close)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ApnsProvider:
        """APNS_KEY_ID, APNS_TEAM_ID, APNS_BUNDLE_ID, APNS_PRIVATE_KEY (PEM) or APNS_PRIVATE_KEY_FILE;
        optional APNS_URL (Apple's production endpoint) and APNS_CA_FILE (a private CA, for tests)."""
        for variable in ("APNS_KEY_ID", "APNS_TEAM_ID", "APNS_BUNDLE_ID"):
            if not environ.get(variable):
                raise ValueError(f"{variable} is not set")
        if pem := environ.get("APNS_PRIVATE_KEY"):
            key = load_key(pem, "APNS_PRIVATE_KEY")
        elif path := environ.get("APNS_PRIVATE_KEY_FILE"):
            try:
                key = load_key(Path(path).read_text(), "APNS_PRIVATE_KEY_FILE")
            except OSError as exc:
                raise ValueError(f"APNS_PRIVATE_KEY_FILE cannot be read: {exc}") from None
        else:
            raise ValueError("APNS_PRIVATE_KEY (PEM text) or APNS_PRIVATE_KEY_FILE is not set")
        return cls(key_id=environ["APNS_KEY_ID"], team_id=environ["APNS_TEAM_ID"],
                   bundle_id=environ["APNS_BUNDLE_ID"], private_key=key,
                   url=environ.get("APNS_URL") or DEFAULT_URL, ca_file=environ.get("APNS_CA_FILE") or None)

    def provider_token(self) -> str:
        now = self.clock()
        if self._token is None or now - self._issued_at >= TOKEN_REFRESH_S:
            self._issued_at = now
            self._token = jwt.encode({"iss": self.team_id, "iat": int(now)}, self.private_key,
                                     algorithm="ES256", headers={"kid": self.key_id})
        return self._token

    def expire(self, token: str) -> None:
        """Forget a token Apple called expired, once: a whole batch of 403s must not refresh it 100 times."""
        if token == self._token:
            self._token = None

    def targets(self, job: dict) -> list[dict | None]:
        return [device for device in job["devices"] if device["platform"] == "ios" and device["token"]]

    async def send(self, sends: list[Send]) -> list[Result]:
        token, client = self.provider_token(), self.clients.get()
        return list(await asyncio.gather(*(self.post(client, send, token) for send in sends)))

    async def post(self, client: AsyncSession, send: Send, token: str) -> Result:
        headers, payload = render_apns(send.job, send.device, self.bundle_id)
        url = f"{self.url}/3/device/{quote(send.device['token'], safe='')}"
        try:
            response = await client.post(url, data=encode(payload),
                                         headers={**headers, "authorization": f"bearer {token}"})
        except RequestException as exc:
            return Result("transient", no_answer(exc))
        reason = None
        if response.status_code != 200:
            try:
                reason = response.json().get("reason")
            except (ValueError, AttributeError):
                pass
        if reason == "ExpiredProviderToken":
            self.expire(token)
        retry_after = parse_retry_after(response.headers.get("retry-after"), datetime.now(UTC))
        return response_result(response.status_code, reason, retry_after,
                               response.headers.get("apns-id") or headers["apns-id"])
