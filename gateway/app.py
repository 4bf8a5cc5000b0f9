"""The gateway's ASGI app: live notifications over WebSocket and Server-Sent Events, and the
notification-center API. Every request is authenticated; the user is the token's subject.

    uvicorn --factory gateway.app:create_app --host 0.0.0.0 --port 8000
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os

from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from gateway.auth import AuthError, TokenVerifier
from gateway.center import BadRequest, Center
from gateway.hub import RESYNC, Hub
from notifyflow import settings

HEARTBEAT_S = 15.0
CHANGES = {"read": "notification.read", "unread": "notification.unread", "archive": "notification.archived"}


def create_app(config: settings.Settings | None = None, verifier: TokenVerifier | None = None) -> Starlette:
    config = config or settings.load()
    verifier = verifier or verifier_from_env()
    pool = AsyncConnectionPool(config.database_url, min_size=1, max_size=10, open=False,
                               kwargs={"autocommit": True})
    hub, center = Hub(config.redis_url), Center(pool)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await pool.open()
        await hub.start()
        yield
        await hub.stop()
        await pool.close()

    def caller(request: Request) -> str:
        header = request.headers.get("authorization", "")
        token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else None
        return verifier.user_of(token or request.query_params.get("token"))

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def list_notifications(request: Request) -> Response:
        user, q = caller(request), request.query_params
        return JSONResponse(await center.page(user, limit=parse_seq(q.get("limit")) or 20, cursor=q.get("cursor"),
                                              category=q.get("category"), state=q.get("state", "inbox")))

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
        if not await center.delete(user, notification_id):
            return JSONResponse({"error": "not found"}, status_code=404)
        await hub.publish(user, {"event": "notification.deleted", "notification": {"id": notification_id}})
        return Response(status_code=204)

    async def sync(user: str, event: str, rows: list[dict]) -> None:
        """Every open device of the user learns of a change made on one of them."""
        for row in rows:
            await hub.publish(user, {"event": event, "event_seq": row["event_seq"], "notification": row})

    async def events(user: str, last_event_id: int | None):
        """Missed changes first (from PostgreSQL), then live ones, each exactly once."""
        queue = await hub.subscribe(user)  # before the replay query, so nothing falls in between
        try:
            sent = last_event_id or 0
            if last_event_id is not None:
                for row in await center.since(user, last_event_id):
                    sent = row["event_seq"]
                    yield {"event": "notification.sync", "event_seq": sent, "notification": row}
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), HEARTBEAT_S)
                except TimeoutError:
                    yield None  # heartbeat
                    continue
                if event is RESYNC:
                    yield event
                    return
                seq = event.get("event_seq")
                if seq is not None and seq <= sent:
                    continue  # already in the replay
                sent = max(sent, seq or 0)
                yield event
        finally:
            await hub.unsubscribe(user, queue)

    async def websocket(socket: WebSocket) -> None:
        try:
            user = verifier.user_of(socket.query_params.get("token"))
            last = parse_seq(socket.query_params.get("last_event_id"))
        except (AuthError, BadRequest) as exc:
            # Accepted first so the client gets a close code and reason, not a bare HTTP 403.
            await socket.accept()
            await socket.close(code=4401, reason=str(exc))
            return
        await socket.accept()
        stream = events(user, last)

        async def forward():
            async for event in stream:
                await socket.send_json(event or {"event": "heartbeat"})
                if event is RESYNC:
                    await socket.close(code=4409, reason="resync")
                    return

        sender = asyncio.create_task(forward())
        try:
            while True:  # the client may mark notifications read over the same socket
                message = json.loads(await socket.receive_text())
                if message.get("type") in CHANGES and isinstance(message.get("ids"), list):
                    await sync(user, CHANGES[message["type"]], await center.set_state(user, message["ids"],
                                                                                     message["type"]))
        except (WebSocketDisconnect, json.JSONDecodeError):
            pass
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
            await stream.aclose()

    async def server_sent_events(request: Request) -> Response:
        user = caller(request)
        last = parse_seq(request.headers.get("last-event-id") or request.query_params.get("last_event_id"))

        async def body():
            yield "retry: 2000\n\n"
            async for event in events(user, last):
                if event is None:
                    yield ": heartbeat\n\n"
                    continue
                event_id = f"id: {event['event_seq']}\n" if event.get("event_seq") is not None else ""
                yield f"{event_id}event: {event['event']}\ndata: {json.dumps(event)}\n\n"

        return StreamingResponse(body(), media_type="text/event-stream",
                                 headers={"cache-control": "no-cache", "x-accel-buffering": "no"})

    async def on_auth_error(request: Request, exc: AuthError) -> Response:
        return JSONResponse({"error": str(exc)}, status_code=401)

    async def on_bad_request(request: Request, exc: BadRequest) -> Response:
        return JSONResponse({"error": str(exc)}, status_code=400)

    routes = [
        Route("/health", health),
        Route("/api/notifications", list_notifications),
        Route("/api/notifications/unread-count", unread_count),
        Route("/api/notifications/read-all", read_all, methods=["POST"]),
        Route("/api/notifications/{id}/{action}", change, methods=["POST"]),
        Route("/api/notifications/{id}", delete, methods=["DELETE"]),
        Route("/events", server_sent_events),
        WebSocketRoute("/ws", websocket),
    ]
    return Starlette(routes=routes, lifespan=lifespan,
                     exception_handlers={AuthError: on_auth_error, BadRequest: on_bad_request})


def parse_seq(value: str | None) -> int | None:
    """A non-negative number from a query parameter or header; None when absent."""
    if value is None or value == "":
        return None
    if not value.isdigit():
        raise BadRequest(f"expected a number, got {value[:20]!r}")
    return int(value)


def verifier_from_env() -> TokenVerifier:
    """GATEWAY_JWT_SECRET (HS256) or GATEWAY_JWT_PUBLIC_KEY (ES256, PEM); GATEWAY_JWT_AUDIENCE optional."""
    audience = os.environ.get("GATEWAY_JWT_AUDIENCE")
    if public_key := os.environ.get("GATEWAY_JWT_PUBLIC_KEY"):
        return TokenVerifier(public_key, "ES256", audience)
    secret = os.environ.get("GATEWAY_JWT_SECRET")
    if not secret:
        raise settings.SettingsError("set GATEWAY_JWT_SECRET (HS256) or GATEWAY_JWT_PUBLIC_KEY (ES256)")
    return TokenVerifier(secret, "HS256", audience)
