"""The gateway's ASGI app: live notifications over WebSocket and Server-Sent Events, and the
notification-center API. Every request is authenticated; the user is the token's subject.

    notifyflow gateway --host 0.0.0.0 --port 8000
    (or: uvicorn --factory gateway.app:create_app --ws websockets-sansio --ws-per-message-deflate false)
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import uuid
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qsl

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from gateway import metrics
from gateway.auth import AuthError, TokenVerifier, issue_token
from gateway.center import BadRequest, Center
from gateway.hub import HEARTBEAT, RESYNC, Hub, Inbox
from gateway.openapi import OPENAPI
from gateway.publisher import Publisher
from kernel import logs, settings
from kernel.clock import utcnow
from kernel.requests import device_record, preferences_record
from kernel.schedule import ScheduleError, next_digest_at, parse_zone, quiet_until
from kernel.topics import DEVICES, ENGAGEMENT, PREFERENCES, PRESENCE
from schemas import CodecError

WEB_DIR = Path(__file__).resolve().parent.parent / "web"  # the browser client, served as it is
# How uvicorn serves the gateway. No permessage-deflate: its zlib state costs ~35 KB per idle
# connection, and notification events are small JSON that compress poorly.
PRESENCE_REFRESH_S = 30.0  # "online" again for every connected device, well within flows.user_state.PRESENCE_TTL
REPLAY_LIMIT = 500  # changes replayed on reconnect; beyond that the client reloads instead
SERVER_OPTIONS = {"factory": True, "ws": "websockets-sansio", "ws_per_message_deflate": False}
CHANGES = {"read": "notification.read", "unread": "notification.unread", "archive": "notification.archived"}


def create_app(config: settings.Settings | None = None, verifier: TokenVerifier | None = None,
               demo: bool | None = None, vapid_public_key: str | None = None,
               presence_refresh_s: float = PRESENCE_REFRESH_S):
    """`demo` (or GATEWAY_DEMO=1) adds /demo/token?user=..., which hands out tokens to anyone: the
    embedded default's demo page uses it; never enable it where real users are.
    `vapid_public_key` (or VAPID_PUBLIC_KEY): the application server key of the Web Push sink's
    VAPID_PRIVATE_KEY, handed to browsers; the gateway never holds the private key."""
    logs.install()
    config = config or settings.load()
    verifier = verifier or verifier_from_env()
    vapid_public_key = check_vapid_public_key(vapid_public_key or os.environ.get("VAPID_PUBLIC_KEY") or None)
    demo = os.environ.get("GATEWAY_DEMO") == "1" if demo is None else demo
    pool = AsyncConnectionPool(config.database_url, min_size=1, max_size=10, open=False,
                               kwargs={"autocommit": True})
    hub, center = Hub(config.redis_url), Center(pool)
    publisher, gateway_id = Publisher(config.kafka_bootstrap_servers, config.schema_registry_url), uuid.uuid4().hex[:8]

    live: Counter[tuple[str, str]] = Counter()  # (user, device) -> open connections

    async def refresh_presence() -> None:
        """Presence expires in the flows unless repeated, so a gateway that dies leaves no one "online"."""
        while True:
            await asyncio.sleep(presence_refresh_s)
            for n, (user, device_id) in enumerate(list(live)):
                presence(user, device_id, "online")
                if n % 500 == 499:
                    await asyncio.sleep(0)  # thousands of devices: let live events through meanwhile

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await pool.open()
        await hub.start()
        refresher = asyncio.create_task(refresh_presence())
        yield
        refresher.cancel()
        await hub.stop()
        await pool.close()
        publisher.close()

    def caller(request: Request) -> str:
        header = request.headers.get("authorization", "")
        token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else None
        return verifier.user_of(token or request.query_params.get("token"))

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def prometheus(request: Request) -> Response:
        return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)

    async def openapi(request: Request) -> Response:
        return JSONResponse(OPENAPI)

    async def demo_token(request: Request) -> Response:
        user = request.query_params.get("user", "")
        if not user or verifier.algorithm != "HS256":
            raise BadRequest("demo tokens need ?user= and an HS256 secret")
        return JSONResponse({"user": user, "token": issue_token(user, verifier.key, ttl_s=8 * 3600)})

    async def home(request: Request) -> Response:
        return RedirectResponse("/static/demo.html")

    async def list_notifications(request: Request) -> Response:
        user, q = caller(request), request.query_params
        return JSONResponse(await center.page(user, limit=parse_seq(q.get("limit")) or 20, cursor=q.get("cursor"),
                                              category=q.get("category"), state=q.get("state", "inbox")))

    async def push_config(request: Request) -> Response:
        caller(request)
        return JSONResponse({"vapid_public_key": vapid_public_key})

    async def unread_count(request: Request) -> Response:
        return JSONResponse(await center.unread_counts(caller(request)))

    async def change(request: Request) -> Response:
        user, action = caller(request), request.path_params["action"]
        if action not in CHANGES:
            return JSONResponse({"error": f"unknown action {action}"}, status_code=404)
        rows = await center.set_state(user, [request.path_params["id"]], action)
        if not rows:  # not the caller's, or no such notification: the same answer either way
            return JSONResponse({"error": "not found"}, status_code=404)
        await sync(user, CHANGES[action], rows)
        return JSONResponse(rows[0])

    async def read_all(request: Request) -> Response:
        user = caller(request)
        rows = await center.read_all(user, request.query_params.get("category"))
        await sync(user, "notification.read", rows)
        return JSONResponse({"read": len(rows)})

    async def delete(request: Request) -> Response:
        user, notification_id = caller(request), request.path_params["id"]
        event_seq = await center.delete(user, notification_id)
        if event_seq is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        await hub.publish(user, {"event": "notification.deleted", "event_seq": event_seq,
                                 "notification": {"id": notification_id, "deleted": True}})
        return Response(status_code=204)

    async def get_preferences(request: Request) -> Response:
        user = caller(request)
        rows = await center.fetch("SELECT settings FROM preferences WHERE user_id = %s", [user])
        return JSONResponse(rows[0]["settings"] if rows else preferences_json(preferences_record(user)))

    async def put_preferences(request: Request) -> Response:
        user, body = caller(request), await json_body(request)
        record = preferences_record(**{**body, "user_id": user, "updated_at": utcnow(), "deleted": False})
        check_schedules(record)
        publisher.publish(PREFERENCES, record)  # validates: unknown or mistyped fields are refused
        saved = preferences_json(record)
        await center.fetch("INSERT INTO preferences (user_id, settings, updated_at) VALUES (%s, %s, now()) "
                           "ON CONFLICT (user_id) DO UPDATE SET settings = EXCLUDED.settings, updated_at = now()",
                           [user, Jsonb(saved)])
        await hub.publish(user, {"event": "preferences.updated", "preferences": saved})
        return JSONResponse(saved)

    async def register_device(request: Request) -> Response:
        user, body = caller(request), await json_body(request)
        if not isinstance(body.get("device_id"), str) or not isinstance(body.get("platform"), str):
            raise BadRequest("device_id and platform are required")
        record = device_record(**{**body, "user_id": user, "registered_at": utcnow(), "active": True})
        publisher.publish(DEVICES, record)
        await center.fetch(
            "INSERT INTO devices (user_id, device_id, platform, token, web_push, app_version, active) "
            "VALUES (%s, %s, %s, %s, %s, %s, true) ON CONFLICT (user_id, device_id) DO UPDATE SET "
            "platform = EXCLUDED.platform, token = EXCLUDED.token, web_push = EXCLUDED.web_push, "
            "app_version = EXCLUDED.app_version, active = true, registered_at = now()",
            [user, record["device_id"], record["platform"], record["token"],
             Jsonb(record["web_push"]) if record["web_push"] else None, record["app_version"]])
        return JSONResponse({"device_id": record["device_id"], "active": True}, status_code=201)

    async def remove_device(request: Request) -> Response:
        user, device_id = caller(request), request.path_params["device_id"]
        rows = await center.fetch("UPDATE devices SET active = false WHERE user_id = %s AND device_id = %s "
                                  "RETURNING platform, token", [user, device_id])
        if not rows:
            return JSONResponse({"error": "not found"}, status_code=404)
        publisher.publish(DEVICES, device_record(user, device_id, rows[0]["platform"],
                                                          token=rows[0]["token"], active=False))
        return Response(status_code=204)

    async def engagement(request: Request) -> Response:
        user, body = caller(request), await json_body(request)
        rows = await center.fetch("SELECT category, content FROM notifications WHERE user_id = %s AND id = %s",
                                  [user, body.get("notification_id")])
        if not rows:
            return JSONResponse({"error": "not found"}, status_code=404)
        content = rows[0]["content"] or {}
        publisher.publish(ENGAGEMENT, {
            "notification_id": body["notification_id"], "user_id": user, "action": body.get("action"),
            "action_id": body.get("action_id"), "device_id": body.get("device_id"),
            "channel": body.get("channel", "in_app"), "at": utcnow(), "campaign_id": content.get("campaign_id"),
            "variant": content.get("variant"), "category": rows[0]["category"]})
        return Response(status_code=202)

    def presence(user: str, device_id: str, status: str) -> None:
        publisher.publish(PRESENCE, {"user_id": user, "device_id": device_id, "status": status,
                                              "at": utcnow(), "gateway_id": gateway_id})

    async def sync(user: str, event: str, rows: list[dict]) -> None:
        """Every open device of the user learns of a change made on one of them."""
        for row in rows:
            await hub.publish(user, {"event": event, "event_seq": row["event_seq"], "notification": row})

    async def catch_up(user: str, last_event_id: int | None, heartbeats: bool):
        """(inbox, stream): the inbox of live changes, subscribed before the missed ones are read
        (from PostgreSQL), so nothing falls in between; the stream yields the missed ones (or a
        resync when there are too many), then the live ones. The caller unsubscribes the inbox."""
        inbox = await hub.subscribe(user, heartbeats)
        try:
            missed = [] if last_event_id is None else await center.since(user, last_event_id, REPLAY_LIMIT + 1)
            if len(missed) > REPLAY_LIMIT:
                # More than is worth replaying: the client reloads from the API, then goes on from here.
                backlog = [{**RESYNC, "event_seq": await center.latest_seq(user)}]
            else:
                backlog = [{"event": "notification.deleted" if row["deleted"] else "notification.sync",
                            "event_seq": row["event_seq"], "notification": row} for row in missed]
            return inbox, events(inbox, backlog, last_event_id)
        except BaseException:
            await hub.unsubscribe(user, inbox)
            raise

    async def events(inbox: Inbox, backlog: list[dict], last_event_id: int | None):
        """The missed changes, then live ones not among them, each once; ends after a resync."""
        sent, pending = last_event_id or 0, backlog
        while True:
            for event in pending:
                seq = event.get("event_seq")
                if seq is not None and seq <= sent:
                    continue  # already in the replay
                sent = max(sent, seq or 0)
                yield event
                if event["event"] == "resync":
                    return
            pending = await inbox.take()

    async def websocket(scope, receive, send) -> None:
        """/ws as a bare ASGI handler, not a Starlette route: a gateway holds tens of thousands of
        idle connections, and every framework layer would stay on each one's stack (bench.gateway)."""
        if (await receive())["type"] != "websocket.connect":
            return
        try:
            user, last, device_id = websocket_params(scope)
        except (AuthError, BadRequest) as exc:
            # Accepted first so the client gets a close code and reason, not a bare HTTP 403.
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": 4401, "reason": str(exc)})
            return
        inbox, stream = await catch_up(user, last, heartbeats=False)  # WebSocket pings keep it alive
        try:
            # Accepted once live: for the client, "open" means every change from now on arrives live.
            await send({"type": "websocket.accept"})
            await connected(user, device_id, receive, send, stream)
        finally:
            await hub.unsubscribe(user, inbox)

    def websocket_params(scope) -> tuple[str, int | None, str]:
        """(user, last_event_id, device) from the query string, of which nothing else stays alive
        with the connection (the token is long, and there are tens of thousands of connections)."""
        query = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
        return (verifier.user_of(query.get("token")), parse_seq(query.get("last_event_id")),
                query.get("device") or f"web-{uuid.uuid4().hex[:8]}")

    async def connected(user: str, device_id: str, receive, send, stream) -> None:
        """Forwards the stream while reading what the client sends (it may mark notifications read)."""

        async def forward():
            async for event in stream:
                await send({"type": "websocket.send", "text": json.dumps(event)})
                metrics.sent("websocket", event)
                if event["event"] == "resync":
                    await send({"type": "websocket.close", "code": 4409, "reason": "resync"})
                    return

        presence(user, device_id, "online")
        live[(user, device_id)] += 1
        sender = asyncio.create_task(forward())
        metrics.CONNECTIONS.labels("websocket").inc()
        try:
            while (message := await receive())["type"] == "websocket.receive":
                change = json.loads(message.get("text") or "null")
                if isinstance(change, dict) and change.get("type") in CHANGES and isinstance(change.get("ids"), list):
                    await sync(user, CHANGES[change["type"]], await center.set_state(user, change["ids"],
                                                                                    change["type"]))
        except json.JSONDecodeError:
            await send({"type": "websocket.close", "code": 1007, "reason": "messages must be JSON"})
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
            await stream.aclose()
            metrics.CONNECTIONS.labels("websocket").dec()
            live[(user, device_id)] -= 1
            if not live[(user, device_id)]:  # its last connection
                del live[(user, device_id)]
                presence(user, device_id, "offline")

    async def server_sent_events(request: Request) -> Response:
        user = caller(request)
        last = parse_seq(request.headers.get("last-event-id") or request.query_params.get("last_event_id"))

        async def body():
            inbox, stream = await catch_up(user, last, heartbeats=True)
            metrics.CONNECTIONS.labels("sse").inc()
            try:
                yield "retry: 2000\n\n"
                async for event in stream:
                    if event is HEARTBEAT:
                        yield ": heartbeat\n\n"
                        continue
                    event_id = f"id: {event['event_seq']}\n" if event.get("event_seq") is not None else ""
                    yield f"{event_id}event: {event['event']}\ndata: {json.dumps(event)}\n\n"
                    metrics.sent("sse", event)
            finally:
                await hub.unsubscribe(user, inbox)
                metrics.CONNECTIONS.labels("sse").dec()

        return StreamingResponse(body(), media_type="text/event-stream",
                                 headers={"cache-control": "no-cache", "x-accel-buffering": "no"})

    async def on_auth_error(request: Request, exc: AuthError) -> Response:
        return JSONResponse({"error": str(exc)}, status_code=401)

    async def on_bad_request(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": getattr(exc, "reason", None) or str(exc)}, status_code=400)

    routes = [
        Route("/health", health),
        Route("/metrics", prometheus),
        Route("/openapi.json", openapi),
        Route("/api/notifications", list_notifications),
        Route("/api/notifications/unread-count", unread_count),
        Route("/api/notifications/read-all", read_all, methods=["POST"]),
        Route("/api/notifications/{id}/{action}", change, methods=["POST"]),
        Route("/api/notifications/{id}", delete, methods=["DELETE"]),
        Route("/api/preferences", get_preferences),
        Route("/api/preferences", put_preferences, methods=["PUT"]),
        Route("/api/devices", register_device, methods=["POST"]),
        Route("/api/devices/{device_id}", remove_device, methods=["DELETE"]),
        Route("/api/engagement", engagement, methods=["POST"]),
        Route("/api/push/config", push_config),
        Route("/events", server_sent_events),
        Mount("/static", StaticFiles(directory=WEB_DIR), name="static"),
    ]
    if demo:
        routes += [Route("/", home), Route("/demo/token", demo_token)]
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={AuthError: on_auth_error, BadRequest: on_bad_request,
                                        CodecError: on_bad_request, ScheduleError: on_bad_request})

    async def gateway(scope, receive, send) -> None:
        if scope["type"] == "websocket" and scope["path"] == "/ws":
            return await websocket(scope, receive, send)
        return await app(scope, receive, send)

    return gateway


async def json_body(request: Request) -> dict:
    try:
        body = await request.json()
    except json.JSONDecodeError:
        raise BadRequest("the body is not JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def check_schedules(record: dict) -> None:
    """Quiet hours and digest settings must be usable before the flows rely on them."""
    parse_zone(record["timezone"], "timezone")
    quiet_until(record["quiet_hours"], utcnow())
    if record["digest"]:
        next_digest_at(record["digest"], utcnow())


def preferences_json(record: dict) -> dict:
    return {key: value for key, value in record.items() if key not in ("updated_at", "deleted")}


def parse_seq(value: str | None) -> int | None:
    """A non-negative number from a query parameter or header; None when absent."""
    if value is None or value == "":
        return None
    if not value.isdigit():
        raise BadRequest(f"expected a number, got {value[:20]!r}")
    return int(value)


def check_vapid_public_key(key: str | None) -> str | None:
    """An uncompressed P-256 point in b64url, as `pushManager.subscribe()` takes it."""
    if key is None:
        return None
    try:
        point = base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))
    except ValueError:
        point = b""
    if len(point) != 65 or point[0] != 4:
        raise settings.SettingsError("VAPID_PUBLIC_KEY must be the b64url uncompressed P-256 public key "
                                     "(65 bytes, the application server key of VAPID_PRIVATE_KEY)")
    return key


def verifier_from_env() -> TokenVerifier:
    """GATEWAY_JWT_SECRET (HS256) or GATEWAY_JWT_PUBLIC_KEY (ES256, PEM); GATEWAY_JWT_AUDIENCE optional."""
    audience = os.environ.get("GATEWAY_JWT_AUDIENCE")
    if public_key := os.environ.get("GATEWAY_JWT_PUBLIC_KEY"):
        return TokenVerifier(public_key, "ES256", audience)
    secret = os.environ.get("GATEWAY_JWT_SECRET")
    if not secret:
        raise settings.SettingsError("set GATEWAY_JWT_SECRET (HS256) or GATEWAY_JWT_PUBLIC_KEY (ES256)")
    return TokenVerifier(secret, "HS256", audience)
