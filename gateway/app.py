"""The gateway's ASGI app: live notifications over WebSocket and Server-Sent Events (gateway.live),
and the notification-center API (gateway.rest). Every request is authenticated; the user is the
token's subject. The exception is one-click unsubscribe (gateway.unsubscribe), whose signed link is
its credential.

    notifyflow gateway --host 0.0.0.0 --port 8000
    (or: uvicorn.run("gateway.app:create_app", **SERVER_OPTIONS); notifyflow gateway --workers N for N processes)
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import uuid
from pathlib import Path

from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from connectors.config_tables import sender_grants
from connectors.outage import TRANSIENT
from gateway.auth import AuthError, TokenVerifier
from gateway.center import BadRequest, Center
from gateway.engagement import Engagements
from gateway.hub import Hub
from gateway.ingest import Ingest
from gateway.ingest_store import IngestStore
from gateway.live import PRESENCE_REFRESH_S, Live
from gateway.publisher import Publisher
from gateway.rest import Rest
from gateway.store import Store
from gateway.unsubscribe import Unsubscribes
from kernel import logs, settings
from kernel.schedule import ScheduleError
from kernel.unsubscribe import secret_from_env
from schemas import CodecError

WEB_DIR = Path(__file__).resolve().parent.parent / "web"  # the browser client, served as it is
# How uvicorn serves the gateway: websockets-sansio with a bound on stalled peers (gateway.transport).
# No permessage-deflate: its zlib state costs ~35 KB per idle connection, and notification events
# are small JSON that compress poorly.
SERVER_OPTIONS = {"factory": True, "ws": "gateway.transport:BoundedWebSocketProtocol", "ws_per_message_deflate": False}


def create_app(config: settings.Settings | None = None, verifier: TokenVerifier | None = None,
               demo: bool | None = None, vapid_public_key: str | None = None,
               presence_refresh_s: float = PRESENCE_REFRESH_S, unsubscribe_secret: str | None = None):
    """`demo` (or GATEWAY_DEMO=1) adds /demo/token?user=..., which hands out tokens to anyone: the
    embedded default's demo page uses it; never enable it where real users are.
    `vapid_public_key` (or VAPID_PUBLIC_KEY): the application server key of the Web Push sink's
    VAPID_PRIVATE_KEY, handed to browsers; the gateway never holds the private key.
    `unsubscribe_secret` (or UNSUBSCRIBE_SECRET): the email sink's, which signs the links /unsubscribe honours."""
    logs.install()
    config = config or settings.load()
    verifier = verifier or verifier_from_env()
    vapid_public_key = check_vapid_public_key(vapid_public_key or os.environ.get("VAPID_PUBLIC_KEY") or None)
    demo = os.environ.get("GATEWAY_DEMO") == "1" if demo is None else demo
    # Connections are checked as they are handed out: after PostgreSQL restarts, no request gets a dead
    # one. While it is away, requests wait 5 s for a connection, then get a 503.
    pool = AsyncConnectionPool(config.database_url, min_size=1, max_size=10, open=False,
                               kwargs={"autocommit": True}, check=AsyncConnectionPool.check_connection, timeout=5)
    hub, center = Hub(config.redis_url), Center(pool)
    publisher = Publisher(config.kafka_bootstrap_servers, config.schema_registry_url)
    engagements, store = Engagements(publisher), Store(pool)
    live = Live(hub, center, publisher, engagements, verifier, gateway_id=uuid.uuid4().hex[:8])
    rest = Rest(center, store, hub, publisher, engagements, verifier, vapid_public_key)
    unsubscribes = Unsubscribes(center, store, hub, engagements, unsubscribe_secret or secret_from_env())
    ingest = Ingest(IngestStore(pool), config.redis_url, config.kafka_bootstrap_servers, config.schema_registry_url,
                    sender_grants(config.database_url))

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await pool.open()
        await hub.start()
        refresher = asyncio.create_task(live.refresh_presence(presence_refresh_s))
        yield
        refresher.cancel()
        await hub.stop()
        await ingest.close()
        await pool.close()
        publisher.close()

    routes = [
        Route("/health", rest.health),
        Route("/metrics", rest.prometheus),
        Route("/openapi.json", rest.openapi),
        Route("/api/notifications", rest.list_notifications),
        Route("/api/notifications/unread-count", rest.unread_count),
        Route("/api/notifications/read-all", rest.read_all, methods=["POST"]),
        Route("/api/notifications/{id}/{action}", rest.change, methods=["POST"]),
        Route("/api/notifications/{id}", rest.delete, methods=["DELETE"]),
        Route("/api/preferences", rest.get_preferences),
        Route("/api/preferences", rest.put_preferences, methods=["PUT"]),
        Route("/api/devices", rest.register_device, methods=["POST"]),
        Route("/api/devices/{device_id}", rest.remove_device, methods=["DELETE"]),
        Route("/api/engagement", rest.engagement, methods=["POST"]),
        Route("/api/push/config", rest.push_config),
        Route("/v1/notifications", ingest.notifications, methods=["POST"]),
        Route("/unsubscribe", unsubscribes.confirmation, methods=["GET"]),
        Route("/unsubscribe", unsubscribes.unsubscribe, methods=["POST"]),
        Route("/events", live.server_sent_events),
        Mount("/static", StaticFiles(directory=WEB_DIR), name="static"),
    ]
    if demo:
        routes += [Route("/", rest.home), Route("/demo/token", rest.demo_token)]
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={AuthError: on_auth_error, BadRequest: on_bad_request,
                                        CodecError: on_bad_request, ScheduleError: on_bad_request,
                                        **{error: on_unavailable for error in TRANSIENT}})

    async def gateway(scope, receive, send) -> None:
        if scope["type"] == "websocket" and scope["path"] == "/ws":
            return await live.websocket(scope, receive, send)
        return await app(scope, receive, send)

    return gateway


async def on_auth_error(request: Request, exc: AuthError) -> Response:
    return JSONResponse({"error": str(exc)}, status_code=401)


async def on_bad_request(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": getattr(exc, "reason", None) or str(exc)}, status_code=400)


async def on_unavailable(request: Request, exc: Exception) -> Response:
    """PostgreSQL or Redis is away: nothing was lost, the client tries again (the health says which)."""
    return JSONResponse({"error": "temporarily unavailable, try again"}, status_code=503, headers={"retry-after": "2"})


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
