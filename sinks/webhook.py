"""Webhooks: one signed POST per job to the tenant's endpoint (Standard Webhooks).

The `webhook-id` is the job id, stable across retries and replays, so receivers can drop
duplicates; the signature covers id, timestamp and body, and receivers reject old timestamps.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from datetime import UTC, datetime

import aiohttp
from standardwebhooks import Webhook

from sinks.engine import Result, Send
from sinks.http import no_answer, session_per_loop
from sinks.retry import parse_retry_after

ENDPOINTS_TTL_S = 60.0
# Worth another try: the receiver is busy or down, not refusing this message.
TRANSIENT_STATUSES = {408, 425, 429, 500, 502, 503, 504}


def payload(job: dict) -> str:
    """What a receiver gets: the notification as the user would see it, never devices or addresses."""
    return json.dumps({"type": f"notification.{'updated' if job['revision'] else 'created'}", "data": {
        "id": job["notification_id"], "revision": job["revision"], "user_id": job["user_id"],
        "title": job["title"], "body": job["body"], "category": job["category"], "priority": job["priority"],
        "type": job["type"], "deep_link": job["deep_link"], "payload": job["payload"],
        "created_at": job["created_at"].isoformat()}}, separators=(",", ":"))


class WebhookProvider:
    name = "webhook"
    batch_size = 100

    def __init__(self, endpoints_of) -> None:
        """`endpoints_of(tenants)` -> {tenant: (url, secret)} for the active endpoints."""
        self.endpoints_of = endpoints_of
        self._endpoints: dict[str, tuple[str, str] | None] = {}
        self._loaded_at = 0.0
        self.sessions = session_per_loop()

    def targets(self, job: dict) -> list[dict | None]:
        return [None]

    def circuit(self, send: Send) -> str:
        """Each tenant's endpoint is its own provider: one that is down must not stop the others."""
        return f"webhook:{send.job['tenant']}"

    def endpoints(self, tenants: set[str]) -> dict[str, tuple[str, str] | None]:
        if time.monotonic() - self._loaded_at > ENDPOINTS_TTL_S:
            self._endpoints, self._loaded_at = {}, time.monotonic()
        if missing := tenants - set(self._endpoints):
            found = self.endpoints_of(missing)
            self._endpoints.update({tenant: found.get(tenant) for tenant in missing})
        return self._endpoints

    async def send(self, sends: list[Send]) -> list[Result]:
        endpoints = self.endpoints({send.job["tenant"] for send in sends})
        session = self.sessions.get()  # kept between batches: connections stay open
        return list(await asyncio.gather(*(self.post(session, send, endpoints[send.job["tenant"]])
                                           for send in sends)))

    async def post(self, session: aiohttp.ClientSession, send: Send, endpoint: tuple[str, str] | None) -> Result:
        if endpoint is None:
            return Result("permanent", f"tenant {send.job['tenant']} has no active webhook endpoint")
        url, secret = endpoint
        body, now = payload(send.job), datetime.now(UTC)
        headers = {"content-type": "application/json", "webhook-id": send.job["job_id"],
                   "webhook-timestamp": str(int(now.timestamp())),
                   "webhook-signature": signer(secret).sign(send.job["job_id"], now, body)}
        try:
            async with session.post(url, data=body.encode(), headers=headers) as response:
                await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Result("transient", no_answer(exc))
        if 200 <= response.status < 300:
            return Result("sent", provider_id=send.job["job_id"])
        reason = f"HTTP {response.status} from {url}"
        if response.status in TRANSIENT_STATUSES:
            return Result("transient", reason, parse_retry_after(response.headers.get("retry-after"), now))
        return Result("permanent", reason)


@functools.lru_cache(maxsize=1024)
def signer(secret: str) -> Webhook:
    """The signer for an endpoint's secret (decoded once, not per message)."""
    return Webhook(secret)
