"""Live notifications over WebSocket (/ws) and Server-Sent Events (/events).

A device connects with the last event id it saw: it first gets what changed meanwhile (from
PostgreSQL, or a resync when that is too much), then every change live (from the hub), each once.
While a device is connected, the flows hear that it is online.

When the live stream had a gap (Redis went away; gateway.hub marks it), the connection catches up
from PostgreSQL after the last event it was sent, or is told to resync, never left behind.
While PostgreSQL is away, a device connecting with a last event id is told to try again later
(close 1013; SSE 503), and one that needs a catch-up waits for it, then resyncs."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from urllib.parse import parse_qsl

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from connectors.outage import TRANSIENT
from gateway import metrics
from gateway.auth import AuthError, TokenVerifier, User
from gateway.center import BadRequest, Center, parse_seq
from gateway.engagement import Engagements
from gateway.hub import CHANGES, GAP, HEARTBEAT, RESYNC, Hub, Inbox
from gateway.publisher import Publisher
from kernel.clock import utcnow
from kernel.topics import PRESENCE

PRESENCE_REFRESH_S = 30.0  # "online" again for every connected device, well within the flows' presence TTL (90 s)
REPLAY_LIMIT = 500  # changes replayed on reconnect; beyond that the client reloads instead
GAP_PATIENCE_S = 30.0  # how long a connection waits for PostgreSQL to catch it up before it is told to resync
# event_seqs a connection remembers sending: an event replayed and also live, or published twice
# (a retry after Redis went away), is sent once, even when events arrive out of order.
RECENT = 128
TRY_LATER = 1013  # WebSocket close code "try again later": PostgreSQL is away


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
            backlog = [] if last_event_id is None else await self.replay(user, last_event_id)
            return inbox, self.events(user, inbox, backlog, last_event_id)
        except BaseException:
            await self.hub.unsubscribe(user, inbox)
            raise

    async def replay(self, user: User, after: int) -> list[dict]:
        """What changed for the user after event `after`; a resync when that is more than worth replaying."""
        missed = await self.center.since(user, after, REPLAY_LIMIT + 1)
        if len(missed) > REPLAY_LIMIT:
            # The client reloads from the API, then goes on from here.
            return [{**RESYNC, "event_seq": await self.center.latest_seq(user)}]
        return [{"event": "notification.deleted" if row["deleted"] else "notification.sync",
                 "event_seq": row["event_seq"], "notification": row} for row in missed]

    async def after_gap(self, user: User, sent: int | None) -> list[dict]:
        """What the live stream may have missed, from PostgreSQL (waiting for it a while), else a resync."""
        if sent is None:  # no position to replay from (it connected without one and got nothing yet)
            return [{**RESYNC, "event_seq": await self.center.latest_seq(user)}]
        deadline, delay = time.monotonic() + GAP_PATIENCE_S, 0.2
        while True:
            try:
                return await self.replay(user, sent)
            except TRANSIENT:
                if time.monotonic() > deadline:
                    return [RESYNC]  # the client reconnects with its last event id and replays then
                await asyncio.sleep(delay)
                delay = min(2.0, delay * 2)

    async def events(self, user: User, inbox: Inbox, backlog: list[dict], last_event_id: int | None):
        """The missed changes, then live ones, each once; after a gap, what it missed; ends after a resync."""
        sent, recent, pending = last_event_id, set(), backlog
        while True:
            for item in pending:
                for event in await self.after_gap(user, sent) if item is GAP else (item,):
                    seq = event.get("event_seq")
                    if event["event"] != "resync" and seq is not None:
                        if seq in recent:
                            continue  # already sent: replayed and live, or published twice
                        recent.add(seq)
                        if len(recent) > RECENT:
                            recent = set(sorted(recent)[RECENT // 2:])  # keep the newest
                        sent = seq if sent is None else max(sent, seq)
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
        # Nothing of the request lives on with the connection: not the token, not the headers.
        scope["query_string"], scope["headers"] = b"", []
        try:
            inbox, stream = await self.catch_up(user, last, heartbeats=False)  # WebSocket pings keep it alive
        except TRANSIENT:  # PostgreSQL is away: the client backs off and reconnects
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": TRY_LATER, "reason": "try again later"})
            return
        try:
            # Accepted once live: for the client, "open" means every change from now on arrives live.
            await send({"type": "websocket.accept"})
            await self.connected(user, device_id, receive, send, inbox, stream)
        finally:
            await self.hub.unsubscribe(user, inbox)

    def websocket_params(self, scope) -> tuple[User, int | None, str]:
        """(user, last_event_id, device) from the query string, of which nothing else stays alive
        with the connection (the token is long, and there are tens of thousands of connections)."""
        query = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
        return (self.verifier.user_of(query.get("token")), parse_seq(query.get("last_event_id")),
                query.get("device") or f"web-{uuid.uuid4().hex[:8]}")

    async def connected(self, user: User, device_id: str, receive, send, inbox: Inbox, stream) -> None:
        """Forwards the stream while reading what the client sends (it may mark notifications read)."""
        self.presence(user, device_id, "online")
        self.connections[(user, device_id)] += 1
        sender = asyncio.create_task(self.forward(send, stream))
        closing: list[asyncio.Future] = []

        def cut_off() -> None:
            """Its inbox overflowed while the sender was stuck writing: the peer stopped reading and
            would not read a resync either. Closing a connection that does not drain drops it at
            once (gateway.transport); the client reconnects with its last event id."""
            sender.cancel()
            closing.append(asyncio.ensure_future(send({"type": "websocket.close", "code": 4409, "reason": "resync"})))

        inbox.on_overflow = cut_off
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
            await asyncio.gather(sender, *closing, return_exceptions=True)
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
        try:
            inbox, stream = await self.catch_up(user, last, heartbeats=True)
        except TRANSIENT:  # PostgreSQL is away: EventSource retries by itself
            return JSONResponse({"error": "try again later"}, status_code=503, headers={"retry-after": "2"})
        # Unsubscribed after the response too: a client gone before the stream started never runs its finally.
        return StreamingResponse(self.event_stream(user, inbox, stream), media_type="text/event-stream",
                                 headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
                                 background=BackgroundTask(self.hub.unsubscribe, user, inbox))

    async def event_stream(self, user: User, inbox: Inbox, stream):
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
