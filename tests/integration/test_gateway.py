"""The gateway served by uvicorn on loopback, against the real PostgreSQL and Valkey: auth and
isolation, the notification-center API with cursor pagination, live WebSocket and SSE events,
read state synced across devices, and replay without gaps after a reconnect."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest
import websockets
from flow_harness import in_app_job, unique
from gateway_harness import GATEWAY_SECRET as SECRET
from gateway_harness import GATEWAY_VAPID_PUBLIC_KEY, records_for, serve_gateway

from connectors import postgres, redis
from gateway.app import check_vapid_public_key
from gateway.auth import issue_token
from kernel.settings import SettingsError
from sinks.in_app import InAppSink


@pytest.fixture
def sink(stack):
    sink = InAppSink(postgres.connect(stack.urls["DATABASE_URL"]), redis.client(stack.urls["REDIS_URL"]))
    yield lambda *jobs: sink.deliver(list(jobs), datetime.now(UTC))
    sink.connection.close()


def api(gateway: str, user: str) -> httpx.Client:
    return httpx.Client(base_url=gateway, headers={"authorization": f"Bearer {issue_token(user, SECRET)}"})


def ws_url(gateway: str, user: str, last_event_id: int | None = None) -> str:
    url = f"ws{gateway.removeprefix('http')}/ws?token={issue_token(user, SECRET)}"
    return url if last_event_id is None else f"{url}&last_event_id={last_event_id}"


async def receive(socket, count: int, timeout: float = 5.0) -> list[dict]:
    events = []
    while len(events) < count:
        event = json.loads(await asyncio.wait_for(socket.recv(), timeout))
        if event["event"] != "heartbeat":
            events.append(event)
    return events


def test_requests_without_a_valid_token_are_refused(gateway):
    with httpx.Client(base_url=gateway) as client:
        assert client.get("/api/notifications").status_code == 401
        forged = issue_token("ana", "not-the-secret-at-all-not-at-all!")
        assert client.get("/api/notifications", headers={"authorization": f"Bearer {forged}"}).json() == {
            "error": "invalid token: Signature verification failed"}
        expired = issue_token("ana", SECRET, ttl_s=-120)
        response = client.get("/api/notifications", headers={"authorization": f"Bearer {expired}"})
        assert (response.status_code, response.json()) == (401, {"error": "token expired"})

    async def connect_with_a_forged_token():
        async with websockets.connect(f"ws{gateway.removeprefix('http')}/ws?token={forged}") as socket:
            await socket.recv()

    with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
        asyncio.run(connect_with_a_forged_token())
    assert closed.value.rcvd.code == 4401


def test_a_user_never_sees_nor_changes_another_users_notifications(gateway, sink):
    ana, ben = unique("ana"), unique("ben")
    sink(in_app_job(ana, unique("n"), title="For Ana"), in_app_job(ben, unique("n"), title="For Ben"))
    with api(gateway, ana) as as_ana, api(gateway, ben) as as_ben:
        [anas] = as_ana.get("/api/notifications").json()["items"]
        [bens] = as_ben.get("/api/notifications").json()["items"]
        assert (anas["title"], bens["title"]) == ("For Ana", "For Ben")
        assert as_ana.post(f"/api/notifications/{bens['id']}/read").status_code == 404
        assert as_ana.delete(f"/api/notifications/{bens['id']}").status_code == 404
        assert as_ben.get("/api/notifications/unread-count").json()["total"] == 1

    async def ana_listens_while_ben_is_notified():
        async with websockets.connect(ws_url(gateway, ana)) as socket:
            await asyncio.sleep(0.3)
            await asyncio.to_thread(sink, in_app_job(ben, unique("n"), title="Ben only"))
            await asyncio.to_thread(sink, in_app_job(ana, unique("n"), title="Ana's"))
            return await receive(socket, 1)

    [event] = asyncio.run(ana_listens_while_ben_is_notified())
    assert event["notification"]["title"] == "Ana's"


def test_cursor_pagination_filters_and_unread_counts(gateway, sink):
    user, start = unique("cal"), datetime.now(UTC) - timedelta(hours=1)
    sink(*[in_app_job(user, f"n{n:02d}", created_at=start + timedelta(seconds=n),
                      category="ci" if n % 3 == 0 else "messages") for n in range(45)])
    with api(gateway, user) as client:
        pages, cursor = [], None
        while True:
            page = client.get("/api/notifications", params={"limit": 20, **({"cursor": cursor} if cursor else {})})
            pages.append([item["id"] for item in page.json()["items"]])
            cursor = page.json()["next_cursor"]
            if cursor is None:
                break
        assert [len(p) for p in pages] == [20, 20, 5]
        assert sum(pages, []) == [f"n{n:02d}" for n in range(44, -1, -1)]  # newest first, no gaps or repeats
        ci = client.get("/api/notifications", params={"category": "ci", "limit": 100}).json()["items"]
        assert len(ci) == 15 and {item["category"] for item in ci} == {"ci"}
        client.post("/api/notifications/n44/read")
        client.post("/api/notifications/n43/archive")
        assert client.get("/api/notifications/unread-count").json() == {
            "total": 43, "by_category": {"ci": 15, "messages": 28}}
        assert [i["id"] for i in client.get("/api/notifications", params={"state": "archived"}).json()["items"]] == [
            "n43"]
        assert client.post("/api/notifications/read-all", params={"category": "ci"}).json() == {"read": 15}
        assert client.get("/api/notifications", params={"cursor": "garbage"}).status_code == 400


def test_live_events_and_read_state_reach_every_device(gateway, sink):
    user = unique("dee")

    async def two_devices():
        async with websockets.connect(ws_url(gateway, user)) as phone, \
                websockets.connect(ws_url(gateway, user)) as laptop:
            await asyncio.sleep(0.3)
            job = in_app_job(user, unique("n"), title="Build failed")
            await asyncio.to_thread(sink, job)
            [on_phone], [on_laptop] = await receive(phone, 1), await receive(laptop, 1)
            await phone.send(json.dumps({"type": "read", "ids": [job["notification_id"]]}))
            [read_on_laptop] = await receive(laptop, 1)
            return on_phone, on_laptop, read_on_laptop

    on_phone, on_laptop, read = asyncio.run(two_devices())
    assert on_phone == on_laptop and on_phone["event"] == "notification.created"
    assert (read["event"], read["notification"]["read"]) == ("notification.read", True)
    assert read["event_seq"] > on_phone["event_seq"]


def test_a_reconnecting_device_gets_what_it_missed_once(gateway, sink, stack):
    user = unique("eve")

    async def scenario():
        async with websockets.connect(ws_url(gateway, user)) as socket:
            await asyncio.sleep(0.3)
            await asyncio.to_thread(sink, in_app_job(user, "first"))
            [seen] = await receive(socket, 1)
        # Offline: two new notifications and one read elsewhere.
        await asyncio.to_thread(sink, in_app_job(user, "second"), in_app_job(user, "third"))
        with psycopg.connect(stack.urls["DATABASE_URL"], autocommit=True) as db:
            db.execute("UPDATE notifications SET read_at = now(), event_seq = nextval(pg_get_serial_sequence("
                       "'notifications', 'event_seq')) WHERE user_id = %s AND id = 'first'", (user,))
        async with websockets.connect(ws_url(gateway, user, seen["event_seq"])) as socket:
            missed = await receive(socket, 3)
            await asyncio.to_thread(sink, in_app_job(user, "fourth"))
            [live] = await receive(socket, 1)
        return missed, live

    missed, live = asyncio.run(scenario())
    assert [(e["event"], e["notification"]["id"], e["notification"]["read"]) for e in missed] == [
        ("notification.sync", "second", False), ("notification.sync", "third", False),
        ("notification.sync", "first", True)]
    assert [e["event_seq"] for e in missed] == sorted(e["event_seq"] for e in missed)
    assert live["notification"]["id"] == "fourth" and live["event_seq"] > missed[-1]["event_seq"]


def test_a_delete_made_while_a_device_was_offline_is_replayed_and_sticks(gateway, sink):
    user = unique("del")
    sink(in_app_job(user, "keep"), in_app_job(user, "gone"))
    with api(gateway, user) as client:
        seen = max(item["event_seq"] for item in client.get("/api/notifications").json()["items"])
        assert client.delete("/api/notifications/gone").status_code == 204
        assert client.delete("/api/notifications/gone").status_code == 404
        sink(in_app_job(user, "gone", revision=1, title="2 new messages"))  # a merge must not bring it back
        assert [item["id"] for item in client.get("/api/notifications", params={"state": "all"}).json()["items"]] == [
            "keep"]
        assert client.post("/api/notifications/gone/read").status_code == 404

    async def reconnect():
        async with websockets.connect(ws_url(gateway, user, seen)) as socket:
            return await receive(socket, 1)

    [deleted] = asyncio.run(reconnect())
    assert deleted["event"] == "notification.deleted" and deleted["event_seq"] > seen
    assert (deleted["notification"]["id"], deleted["notification"]["deleted"]) == ("gone", True)
    assert deleted["notification"]["title"] == "" and deleted["notification"]["actions"] == []


def test_a_device_that_missed_too_much_reloads_instead_of_replaying(gateway, sink, monkeypatch):
    monkeypatch.setattr("gateway.live.REPLAY_LIMIT", 2)
    user = unique("lag")
    sink(in_app_job(user, "old"))
    with api(gateway, user) as client:
        [old] = client.get("/api/notifications").json()["items"]
    sink(*[in_app_job(user, f"missed-{n}") for n in range(3)])

    async def reconnect_far_behind():
        async with websockets.connect(ws_url(gateway, user, old["event_seq"])) as socket:
            [event] = await receive(socket, 1)
            with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
                await socket.recv()
            return event, closed.value.rcvd.code

    async def reconnect_after_reload(last_event_id: int):
        async with websockets.connect(ws_url(gateway, user, last_event_id)) as socket:
            await asyncio.sleep(0.3)
            await asyncio.to_thread(sink, in_app_job(user, "live"))
            return await receive(socket, 1)

    resync, code = asyncio.run(reconnect_far_behind())
    assert resync["event"] == "resync" and code == 4409
    with api(gateway, user) as client:
        newest = max(item["event_seq"] for item in client.get("/api/notifications").json()["items"])
    assert resync["event_seq"] == newest
    [live] = asyncio.run(reconnect_after_reload(resync["event_seq"]))  # nothing missed since: live at once
    assert live["notification"]["id"] == "live"


def test_server_sent_events_carry_ids_for_resume(gateway, sink):
    user = unique("fay")
    token = issue_token(user, SECRET)

    def read_events(found: list):
        with httpx.stream("GET", f"{gateway}/events", headers={"authorization": f"Bearer {token}"},
                          timeout=10) as response:
            found.append(response.headers["content-type"])
            for line in response.iter_lines():
                found.append(line)
                if line.startswith("data: "):
                    return

    found: list = []
    reader = threading.Thread(target=read_events, args=(found,), daemon=True)
    reader.start()
    time.sleep(0.5)
    job = in_app_job(user, unique("n"), title="Via SSE")
    sink(job)
    reader.join(timeout=10)
    assert found[0].startswith("text/event-stream")
    ids = [line for line in found if line.startswith("id: ")]
    data = json.loads(next(line for line in found if line.startswith("data: ")).removeprefix("data: "))
    assert "event: notification.created" in found and data["notification"]["title"] == "Via SSE"
    assert ids == [f"id: {data['event_seq']}"]


def test_preferences_are_saved_validated_and_published(gateway):
    user = unique("gil")
    quiet = {"start_time": "22:00", "end_time": "07:00", "timezone": "Europe/Lisbon", "days": []}
    with api(gateway, user) as client:
        assert client.get("/api/preferences").json()["enabled"] is True  # defaults before any change
        saved = client.put("/api/preferences", json={"enabled": True, "quiet_hours": quiet,
                                                     "email": f"{user}@example.com", "timezone": "Europe/Lisbon"})
        assert saved.status_code == 200 and client.get("/api/preferences").json()["quiet_hours"] == quiet
        bad = client.put("/api/preferences", json={"quiet_hours": {**quiet, "timezone": "Mars/Olympus"}})
        assert bad.status_code == 400 and bad.json()["error"].startswith("quiet_hours.timezone")
        bad = client.put("/api/preferences", json={"timezone": "Europe/Atlantis"})
        assert (bad.status_code, bad.json()) == (400, {"error": "timezone: unknown timezone 'Europe/Atlantis'"})
        unknown = client.put("/api/preferences", json={"colour": "blue"})
        assert (unknown.status_code, unknown.json()) == (400, {"error": "record: unknown fields colour"})
    [published] = records_for(user, "notify.preferences", 1)
    assert published["quiet_hours"] == quiet and published["email"] == f"{user}@example.com"


def test_devices_engagement_and_presence_reach_the_flows(gateway, sink):
    user = unique("hal")
    job = in_app_job(user, unique("n"), category="social", campaign_id="spring")
    sink(job)
    with api(gateway, user) as client:
        assert client.post("/api/devices", json={"device_id": "pixel", "platform": "android",
                                                 "token": "fcm-token"}).status_code == 201
        assert client.delete("/api/devices/pixel").status_code == 204
        assert client.delete("/api/devices/nope").status_code == 404
        assert client.post("/api/engagement", json={"notification_id": job["notification_id"],
                                                    "action": "clicked", "action_id": "open"}).status_code == 202
        assert client.post("/api/engagement", json={"notification_id": "someone-elses",
                                                    "action": "clicked"}).status_code == 404

    async def connect_and_leave():
        async with websockets.connect(ws_url(gateway, user) + "&device=laptop"):
            await asyncio.sleep(0.3)

    asyncio.run(connect_and_leave())
    assert [(d["device_id"], d["active"]) for d in records_for(user, "notify.devices", 2)] == [
        ("pixel", True), ("pixel", False)]
    [clicked] = records_for(user, "notify.engagement", 1)
    assert (clicked["action"], clicked["action_id"], clicked["campaign_id"], clicked["category"]) == (
        "clicked", "open", "spring", "social")
    assert [(p["device_id"], p["status"]) for p in records_for(user, "notify.presence", 2)] == [
        ("laptop", "online"), ("laptop", "offline")]


def test_presence_is_repeated_while_connected_so_the_flows_can_expire_it(stack):
    user = unique("pre")
    with serve_gateway(stack.urls, presence_refresh_s=0.5) as gateway:

        async def stay_connected():
            async with websockets.connect(f"{ws_url(gateway, user)}&device=phone-1"), \
                    websockets.connect(f"{ws_url(gateway, user)}&device=phone-1"):  # two tabs, one device
                await asyncio.sleep(1.8)
            await asyncio.sleep(0.3)

        asyncio.run(stay_connected())
    statuses = [r["status"] for r in records_for(user, "notify.presence", 5)]
    assert statuses[:2] == ["online", "online"] and statuses.count("online") >= 4  # connects, then repeats
    assert statuses[-1] == "offline" and statuses.count("offline") == 1  # when the device's last connection ends


def test_openapi_health_and_metrics(gateway):
    with httpx.Client(base_url=gateway) as client:
        spec = client.get("/openapi.json").json()
        assert spec["openapi"].startswith("3.") and "/api/notifications" in spec["paths"]
        assert client.get("/health").json() == {"status": "ok"}
        exposition = client.get("/metrics").text
    assert "notifyflow_gateway_connections" in exposition
    assert 'notifyflow_gateway_events_sent_total{event="notification.created",transport="websocket"}' in exposition


def test_browsers_get_the_vapid_public_key_and_a_bad_one_stops_the_gateway_at_start(gateway):
    with api(gateway, unique("pia")) as client:
        assert client.get("/api/push/config").json() == {"vapid_public_key": GATEWAY_VAPID_PUBLIC_KEY}
    assert httpx.get(f"{gateway}/api/push/config").status_code == 401
    with pytest.raises(SettingsError, match="VAPID_PUBLIC_KEY must be"):
        check_vapid_public_key("not-a-key")


def test_the_demo_gateway_serves_the_web_client_and_demo_tokens(gateway):
    with httpx.Client(base_url=gateway) as client:
        assert client.get("/static/toasts.js").headers["content-type"].startswith("text/javascript")
        token = client.get("/demo/token", params={"user": "alice"}).json()["token"]
        assert client.get("/api/notifications", headers={"authorization": f"Bearer {token}"}).status_code == 200
