"""The HTTP front door for senders not on Kafka: `POST /v1/notifications` with one request (a JSON
object) or a batch (an array of up to 1,000), authenticated by the sender's API key.

Each item is checked as the notification flow checks it (Avro schema, kernel/validate.py) and
against the sender's grant (kernel/grants.py); a batch is all or nothing: any item refused -> 422
with a reason per refused item, nothing published. Accepted items are published as Avro to the
events topic, keyed like every producer (kernel.requests.routing_key), and answered 202 with their
ids once the broker has acknowledged them. The tenant and sender are the API key's: an item naming
another is refused. An `Idempotency-Key` makes a retry safe: the same key with the same body gets
the first answer again and publishes nothing; with another body, 422. Each key may send
`per_minute` notifications a minute (counted in Redis, so across gateway processes); past that,
429 with `Retry-After`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable
from datetime import datetime

import redis.asyncio as aioredis
from confluent_kafka import KafkaException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from connectors.kafka import produce_all, producer
from gateway.ingest_store import IngestStore, Sender
from kernel.clock import utcnow
from kernel.grants import Grants, refusal
from kernel.requests import from_json, routing_key, tenant_problem
from kernel.topics import EVENTS, codec_for
from kernel.validate import problem
from schemas import AvroCodec, CodecError

MAX_BATCH = 1000
MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_IDEMPOTENCY_KEY = 255
WINDOW_S = 60


class Refused(Exception):
    """An answer other than 202, with the reason in `error`."""

    def __init__(self, status: int, error: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(error)
        self.status, self.body, self.headers = status, {"error": error}, headers or {}


def admit(raw: object, sender: Sender, codec: AvroCodec, grants: Grants, now: datetime) -> tuple[dict, bytes] | str:
    """The request and its Avro bytes, or why it is refused (the reason the flow would give)."""
    if not isinstance(raw, dict):
        return "a notification must be a JSON object"
    metadata = raw.get("metadata", {})
    if not isinstance(metadata, dict):
        return "metadata must be an object"
    if raw.get("tenant") is not None and (reason := tenant_problem(raw["tenant"])):
        return reason
    for name, given, own in (("tenant", raw.get("tenant"), sender.tenant),
                             ("metadata.source_app", metadata.get("source_app"), sender.source_app)):
        if given is not None and given != own:
            return f"{name} {given!r} is not the API key's ({own!r})"
    try:
        record = from_json({**raw, "tenant": sender.tenant, "metadata": {**metadata, "source_app": sender.source_app}})
        value = codec.encode(record)
        record = codec.decode(value)
    except CodecError as exc:
        return exc.reason
    except (ValueError, TypeError, AttributeError) as exc:  # e.g. a timestamp that is not ISO-8601
        return f"not a NotificationRequested: {exc}"
    return problem(record, now) or refusal(grants, record) or (record, value)


class Ingest:
    def __init__(self, store: IngestStore, redis_url: str, bootstrap_servers: str, schema_registry_url: str | None,
                 grants: Callable[[], Grants]) -> None:
        self.store, self.grants = store, grants
        self.redis = aioredis.Redis.from_url(redis_url)
        self.producer = producer(bootstrap_servers)
        self.codec = codec_for(EVENTS, schema_registry_url)

    async def close(self) -> None:
        await self.redis.aclose()
        self.producer.flush(10)

    async def notifications(self, request: Request) -> Response:
        try:
            sender = await self.sender(request)
            body = await read_body(request)
            items = parse_items(body)
            key = idempotency_key(request)
            if key is None:
                return await self.accept(sender, items)
            first = await self.store.claim(sender, key, hashlib.sha256(body).hexdigest())
            if first is not None:
                return replay(first, hashlib.sha256(body).hexdigest())
            try:
                response = await self.accept(sender, items)
            except BaseException:
                await self.store.release(sender, key)
                raise
            if response.status_code == 202:
                await self.store.answer(sender, key, json.loads(response.body))
            else:
                await self.store.release(sender, key)
            return response
        except Refused as refused:
            return JSONResponse(refused.body, status_code=refused.status, headers=refused.headers)

    async def sender(self, request: Request) -> Sender:
        header = request.headers.get("authorization", "")
        sender = await self.store.sender_of(header.removeprefix("Bearer ").strip()) if header.startswith(
            "Bearer ") else None
        if sender is None:
            raise Refused(401, "missing, unknown or revoked API key (Authorization: Bearer nfk_...)",
                          headers={"WWW-Authenticate": "Bearer"})
        return sender

    async def accept(self, sender: Sender, items: list) -> Response:
        if len(items) > sender.per_minute:
            raise Refused(422, f"a batch of {len(items)} is more than this key may send in a minute "
                               f"({sender.per_minute})")
        await self.take_rate(sender, len(items))
        grants, now = await asyncio.to_thread(self.grants), utcnow()
        admitted = [admit(raw, sender, self.codec, grants, now) for raw in items]
        refused = [{"index": i, "id": raw.get("id") if isinstance(raw, dict) else None, "reason": outcome}
                   for i, (raw, outcome) in enumerate(zip(items, admitted)) if isinstance(outcome, str)]
        if refused:
            await self.give_back_rate(sender, len(items))
            return JSONResponse({"error": f"{len(refused)} of {len(items)} notifications refused; none published",
                                 "rejected": refused}, status_code=422)
        try:
            await asyncio.to_thread(produce_all, self.producer, EVENTS,
                                    [(routing_key(record), value) for record, value in admitted])
        except KafkaException as exc:
            await self.give_back_rate(sender, len(items))
            raise Refused(503, f"the broker did not take the notifications ({exc}); nothing was accepted, "
                               "retry (with the same Idempotency-Key)", headers={"Retry-After": "5"}) from exc
        return JSONResponse({"accepted": len(admitted), "ids": [record["id"] for record, _ in admitted]},
                            status_code=202)

    def rate_key(self, sender: Sender, now: float) -> str:
        return f"ingest-rate:{sender.tenant}:{sender.key_id}:{int(now // WINDOW_S)}"

    async def take_rate(self, sender: Sender, n: int) -> None:
        """Count `n` notifications against the key's minute; 429 when that would pass its limit."""
        now = time.time()
        key = self.rate_key(sender, now)
        async with self.redis.pipeline(transaction=True) as pipe:
            count, _ = await pipe.incrby(key, n).expire(key, 2 * WINDOW_S).execute()
        if count > sender.per_minute:
            await self.redis.decrby(key, n)
            retry_after = max(1, int(WINDOW_S - now % WINDOW_S + 0.999))
            raise Refused(429, f"this API key may send {sender.per_minute} notifications a minute",
                          headers={"Retry-After": str(retry_after)})

    async def give_back_rate(self, sender: Sender, n: int) -> None:
        """Nothing was published: what was counted does not count."""
        await self.redis.decrby(self.rate_key(sender, time.time()), n)


async def read_body(request: Request) -> bytes:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise Refused(413, f"the body is larger than {MAX_BODY_BYTES} bytes")
    return body


def parse_items(body: bytes) -> list:
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):  # not UTF-8, not JSON, or nested beyond reason
        raise Refused(400, "the body is not JSON") from None
    items = parsed if isinstance(parsed, list) else [parsed] if isinstance(parsed, dict) else None
    if items is None:
        raise Refused(400, "the body must be a notification (a JSON object) or a batch (an array of them)")
    if not 1 <= len(items) <= MAX_BATCH:
        raise Refused(422, f"a batch holds 1 to {MAX_BATCH} notifications, not {len(items)}")
    return items


def idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is not None and not (0 < len(key) <= MAX_IDEMPOTENCY_KEY and key.isprintable()):
        raise Refused(400, f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable characters")
    return key


def replay(first: dict, body_sha256: str) -> Response:
    if first["body_sha256"] != body_sha256:
        raise Refused(422, "this Idempotency-Key was used with a different body; use a new key for a new request")
    if first["response"] is None:
        raise Refused(409, "a request with this Idempotency-Key is still being handled; retry shortly",
                      headers={"Retry-After": "1"})
    return JSONResponse(first["response"], status_code=202, headers={"Idempotent-Replayed": "true"})
