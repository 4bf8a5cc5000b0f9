"""The gateway through its dependencies' restarts, on servers of its own (they are restarted here):
after Valkey comes back, its subscription is made again by itself and a connected device is caught
up from PostgreSQL on what was stored meanwhile; a device that was away gets it on reconnecting;
/health says which dependency is away, and PostgreSQL coming back needs nothing from outside."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from datetime import UTC, datetime

import httpx
import pytest
import websockets
from flow_harness import in_app_job, unique
from gateway_harness import GATEWAY_SECRET, serve_gateway
from test_gateway import receive, ws_url

from connectors import postgres, redis
from gateway.auth import issue_token
from kernel.settings import SERVICE_VARS
from notifyflow.stack import LocalStack
from sinks.in_app import InAppSink


@pytest.fixture(scope="module")
def own_stack():
    with LocalStack(environ={k: v for k, v in os.environ.items() if k not in SERVICE_VARS}) as stack:
        yield stack


def deliver(urls: dict, user: str, notification_id: str, publish: bool = True) -> None:
    """What the in-app sink does; without `publish`, only its write: a row stored while Redis was away."""
    sink = InAppSink(postgres.connect(urls["DATABASE_URL"]), redis.client(urls["REDIS_URL"]))
    try:
        if publish:
            sink.deliver([in_app_job(user, notification_id)], datetime.now(UTC))
        else:
            sink.database.run(lambda connection: sink.write(connection, [in_app_job(user, notification_id)]))
    finally:
        sink.connection.close()


async def health_becomes(gateway: str, status: str, deadline_s: float = 30.0) -> dict:
    async with httpx.AsyncClient(base_url=gateway, timeout=5) as client:
        deadline = time.monotonic() + deadline_s
        while True:
            response = await client.get("/health")
            if response.json()["status"] == status or time.monotonic() > deadline:
                assert response.status_code == 200  # degraded, not out of the load balancer
                return response.json()
            await asyncio.sleep(0.1)


def restart_in_background(stack: LocalStack, env_var: str, down_s: float) -> threading.Thread:
    outage = threading.Thread(target=stack.restart, args=(env_var, down_s), daemon=True)
    outage.start()
    return outage


def test_after_a_valkey_restart_devices_get_what_they_missed_once(own_stack):
    urls, user = own_stack.urls, unique("val")
    with serve_gateway(urls) as gateway:

        async def scenario():
            stays = await websockets.connect(ws_url(gateway, user, 0))
            away = await websockets.connect(ws_url(gateway, user, 0))
            await asyncio.sleep(0.3)
            await asyncio.to_thread(deliver, urls, user, "before")
            [before], _ = await receive(stays, 1), await receive(away, 1)
            await away.close()
            outage = restart_in_background(own_stack, "REDIS_URL", 3.0)
            degraded = await health_becomes(gateway, "degraded")
            # Stored while Redis is away; its publish never happens: no gateway hears of it live.
            await asyncio.to_thread(deliver, urls, user, "during", False)
            await asyncio.to_thread(outage.join)
            [caught_up] = await receive(stays, 1, timeout=30)
            healthy = await health_becomes(gateway, "ok")
            await asyncio.to_thread(deliver, urls, user, "after")
            [after] = await receive(stays, 1)
            with pytest.raises(asyncio.TimeoutError):  # nothing twice
                await receive(stays, 1, timeout=1)
            await stays.close()
            async with websockets.connect(ws_url(gateway, user, before["event_seq"])) as back:
                missed = await receive(back, 2)
            return degraded, healthy, caught_up, after, missed

        degraded, healthy, caught_up, after, missed = asyncio.run(scenario())
    assert degraded == {"status": "degraded", "unavailable": ["redis"]} and healthy == {"status": "ok"}
    assert (caught_up["event"], caught_up["notification"]["id"]) == ("notification.sync", "during")
    assert (after["event"], after["notification"]["id"]) == ("notification.created", "after")
    assert [e["notification"]["id"] for e in missed] == ["during", "after"]


def test_while_postgres_restarts_health_says_so_and_devices_retry_later(own_stack):
    urls, user = own_stack.urls, unique("pg")
    deliver(urls, user, "stored")
    headers = {"authorization": f"Bearer {issue_token(user, GATEWAY_SECRET)}"}
    with serve_gateway(urls) as gateway:

        async def scenario():
            outage = restart_in_background(own_stack, "DATABASE_URL", 10.0)  # requests wait 5 s for a connection
            degraded = await health_becomes(gateway, "degraded")

            async def list_notifications() -> int:
                async with httpx.AsyncClient(base_url=gateway, headers=headers, timeout=30) as client:
                    return (await client.get("/api/notifications")).status_code

            async def connect_with_last_event_id():
                async with websockets.connect(ws_url(gateway, user, 0), open_timeout=30) as socket:
                    await socket.recv()

            listing, closed = await asyncio.gather(list_notifications(), connect_with_last_event_id(),
                                                   return_exceptions=True)
            await asyncio.to_thread(outage.join)
            healthy = await health_becomes(gateway, "ok")
            async with websockets.connect(ws_url(gateway, user, 0)) as socket:
                [replayed] = await receive(socket, 1)
            assert isinstance(closed, websockets.exceptions.ConnectionClosed), closed
            return degraded, listing, closed.rcvd.code, healthy, replayed

        degraded, listing, code, healthy, replayed = asyncio.run(scenario())
        with httpx.Client(base_url=gateway, headers=headers) as client:
            assert [n["id"] for n in client.get("/api/notifications").json()["items"]] == ["stored"]
    assert degraded == {"status": "degraded", "unavailable": ["postgres"]} and healthy == {"status": "ok"}
    assert listing == 503 and code == 1013  # try again later; nothing is lost
    assert replayed["notification"]["id"] == "stored"
