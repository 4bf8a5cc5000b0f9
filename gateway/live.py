"""Live notifications over WebSocket (/ws) and Server-Sent Events (/events).

A device connects with the last event id it saw: it first gets what changed meanwhile (from
PostgreSQL, or a resync when that is too much), then every change live (from the hub), each once.
While a device is connected, the flows hear that it is online."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from gateway import metrics
from gateway.auth import AuthError, TokenVerifier, User
from gateway.center import BadRequest, Center, parse_seq
from gateway.engagement import Engagements
from gateway.hub import CHANGES, HEARTBEAT, RESYNC, Hub, Inbox
from gateway.publisher import Publisher
from kernel.clock import utcnow
from kernel.topics import PRESENCE

PRESENCE_REFRESH_S = 30.0  # "online" again for every connected device, well within the flows' presence TTL (90 s)
REPLAY_LIMIT = 500  # changes replayed on reconnect; beyond that the client reloads instead


class Live:
    def __init__(self, hub: Hub, center: Center, publisher: Publisher, engagements: Engagements,
                 verifier: TokenVerifier, gateway_id: str) -> None:
        self.hub, self.center, self.publisher, self.verifier = hub, center, publisher, verifier
        self.engagements = engagements
        self.gateway_id = gateway_id
        self.connections: Counter[tuple[User, str]] = Counter()  # (user, device) -> open WebSockets

    async def refresh_presence(self, every_s: float) -> None:
        """Presence expires in the flows unless repeated, so a gateway that dies leaves no one "online"."""
        while True:
            await asyncio.sleep(every_s)
            for n, (user, device_id) in enumerate(list(self.connections)):
                self.presence(user, device_id, "online")
                if n % 500 == 499:
                    await asyncio.sleep(0)  # thousands of devices: let live events through meanwhile

    def presence(self, user: User, device_id: str, status: str) -> None:
        self.publisher.publish(PRESENCE, {"user_id": user.id, "device_id": device_id, "status": status,
                                          "at": utcnow(), "gateway_id": self.gateway_id, "tenant": user.tenant})

    async def catch_up(self, user: User, last_event_id: int | None, heartbeats: bool):
        """(inbox, stream): the inbox of live changes, subscribed before the missed ones are read
        (from PostgreSQL), so nothing falls in between; the stream yields the missed ones (or a
        resync when there are too many), then the live ones. The caller unsubscribes the inbox."""
        inbox = await self.hub.subscribe(user, heartbeats)
        try:
            missed = [] if last_event_id is None else await self.center.since(user, last_event_id, REPLAY_LIMIT + 1)
            if len(missed) > REPLAY_LIMIT:
                # More than is worth replaying: the client reloads from the API, then goes on from here.
                backlog = [{**RESYNC, "event_seq": await self.center.latest_seq(user)}]
            else:
                backlog = [{"event": "notification.deleted" if row["deleted"] else "notification.sync",
                            "event_seq": row["event_seq"], "notification": row} for row in missed]
            return inbox, self.events(inbox, backlog, last_event_id)
        except BaseException:
            await self.hub.unsubscribe(user, inbox)
            raise

    @staticmethod
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

    async def websocket(self, scope, receive, send) -> None:
        """/ws as a bare ASGI handler, not a Starlette route: a gateway holds tens of thousands of
        idle connections, and every framework layer would stay on each one's stack (bench.gateway)."""
        if (await receive())["type"] != "websocket.connect":
            return
        try:
            user, last, device_id = self.websocket_params(scope)
        except (AuthError, BadRequest) as exc:
            # Accepted first so the client gets a close code and reason, not a bare HTTP 403.
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": 4401, "reason": str(exc)})
            return
        inbox, stream = await self.catch_up(user, last, heartbeats=False)  # WebSocket pings keep it alive
        try:
            # Accepted once live: for the client, "open" means every change from now on arrives live.
            await send({"type": "websocket.accept"})
            await self.connected(user, device_id, receive, send, stream)
        finally:
            await self.hub.unsubscribe(user, inbox)

    def websocket_params(self, scope) -> tuple[User, int | None, str]:
        """(user, last_event_id, device) from the query string, of which nothing else stays alive
        with the connection (the token is long, and there are tens of thousands of connections)."""
        query = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
        return (self.verifier.user_of(query.get("token")), parse_seq(query.get("last_event_id")),
                query.get("device") or f"web-{uuid.uuid4().hex[:8]}")

    async def connected(self, user: User, device_id: str, receive, send, stream) -> None:
        """Forwards the stream while reading what the client sends (it may mark notifications read)."""
        self.presence(user, device_id, "online")
        self.connections[(user, device_id)] += 1
        sender = asyncio.create_task(self.forward(send, stream))
        metrics.CONNECTIONS.labels("websocket").inc()
        try:
            while (message := await receive())["type"] == "websocket.receive":
                change = json.loads(message.get("text") or "null")
                if isinstance(change, dict) and change.get("type") in CHANGES and isinstance(change.get("ids"), list):
                    ids = [i for i in change["ids"] if isinstance(i, str)]  # notification ids are strings
                    rows = await self.center.set_state(user, ids, change["type"])
                    await self.hub.publish_changes(user, change["type"], rows)
                    self.engagements.center_change(user, change["type"], rows, device_id)
        except json.JSONDecodeError:
            await send({"type": "websocket.close", "code": 1007, "reason": "messages must be JSON"})
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
            await stream.aclose()
            metrics.CONNECTIONS.labels("websocket").dec()
            self.connections[(user, device_id)] -= 1
            if not self.connections[(user, device_id)]:  # its last connection
                del self.connections[(user, device_id)]
                self.presence(user, device_id, "offline")

    @staticmethod
    async def forward(send, stream) -> None:
        async for event in stream:
            await send({"type": "websocket.send", "text": json.dumps(event)})
            metrics.sent("websocket", event)
            if event["event"] == "resync":
                await send({"type": "websocket.close", "code": 4409, "reason": "resync"})
                return

    async def server_sent_events(self, request: Request) -> Response:
        user = self.verifier.user_of_request(request)
        last = parse_seq(request.headers.get("last-event-id") or request.query_params.get("last_event_id"))
        return StreamingResponse(self.event_stream(user, last), media_type="text/event-stream",
                                 headers={"cache-control": "no-cache", "x-accel-buffering": "no"})

    async def event_stream(self, user: User, last_event_id: int | None):
        inbox, stream = await self.catch_up(user, last_event_id, heartbeats=True)
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
            await self.hub.unsubscribe(user, inbox)
            metrics.CONNECTIONS.labels("sse").dec()
