"""What users do in the notification center reaches the flows: every read, unread, archive, read-all and
delete (REST or WebSocket) becomes an EngagementEvent on notify.engagement, attributed to the
notification's category, campaign and variant; what clients report themselves is validated; toast
presentation settings are validated and saved; the demo page keeps the user it was asked for."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import httpx
import pytest
import websockets
from flow_harness import in_app_job, unique
from gateway_harness import records_for
from test_gateway import api, ws_url

from connectors import postgres, redis
from sinks.in_app import InAppSink

ENGAGEMENT = "notify.engagement"


@pytest.fixture
def sink(stack):
    sink = InAppSink(postgres.connect(stack.urls["DATABASE_URL"]), redis.client(stack.urls["REDIS_URL"]))
    yield lambda *jobs: sink.deliver(list(jobs), datetime.now(UTC))
    sink.connection.close()


def summary(record: dict) -> tuple:
    return (record["notification_id"], record["action"], record["device_id"], record["channel"],
            record["category"], record["campaign_id"], record["variant"])


def test_center_actions_publish_engagement_events(gateway, sink):
    user, n1, n2, n3 = unique("eva"), unique("n1"), unique("n2"), unique("n3")
    first = in_app_job(user, n1, category="social", campaign_id="spring", variant="B")
    sink(first, in_app_job(user, n2), in_app_job(user, n3))
    with api(gateway, user) as client:
        assert client.post(f"/api/notifications/{n1}/read", params={"device": "laptop"}).status_code == 200
        assert client.post(f"/api/notifications/{n1}/unread", params={"device": "laptop"}).status_code == 200
        assert client.post(f"/api/notifications/{n1}/archive").status_code == 200

        async def read_over_the_websocket():
            async with websockets.connect(ws_url(gateway, user) + "&device=phone") as socket:
                await socket.send(json.dumps({"type": "read", "ids": [n2, 42]}))  # 42: not an id, ignored
                while json.loads(await asyncio.wait_for(socket.recv(), 5))["event"] != "notification.read":
                    pass

        asyncio.run(read_over_the_websocket())
        assert client.post("/api/notifications/read-all").json() == {"read": 2}  # n1 (unread again) and n3
        assert client.delete(f"/api/notifications/{n2}", params={"device": "laptop"}).status_code == 204
        assert client.post(f"/api/notifications/{unique('nope')}/read").status_code == 404

    records = records_for(user, ENGAGEMENT, 7)
    found = [summary(r) for r in records]
    # Each carries when its notification was created: its analytics rows share that time's pseudonym key.
    assert {r["created_at"] for r in records if r["notification_id"] == n1} == {first["created_at"]}
    social, messages = ("in_app", "social", "spring", "B"), ("in_app", "messages", None, None)
    assert found[:4] == [(n1, "read", "laptop", *social), (n1, "unread", "laptop", *social),
                         (n1, "archived", None, *social), (n2, "read", "phone", *messages)]
    assert sorted(found[4:6]) == sorted([(n1, "read", None, *social), (n3, "read", None, *messages)])
    assert found[6:] == [(n2, "deleted", "laptop", *messages)]  # attributed, though the delete wiped the content


@pytest.mark.parametrize(("body", "reason"), [
    ("not json", "the body is not JSON"),
    (["a list"], "the body must be a JSON object"),
    ({"notification_id": 5, "action": "clicked"}, "notification_id must be a non-empty string"),
    ({"notification_id": "", "action": "clicked"}, "notification_id must be a non-empty string"),
    ({"notification_id": "n", "action": "liked"}, "action must be one of seen, opened, clicked, dismissed"),
    ({"notification_id": "n", "action": "read"}, "action must be one of seen, opened, clicked, dismissed"),
    ({"notification_id": "n", "action": "unsubscribed"}, "action must be one of seen, opened, clicked, dismissed"),
    ({"notification_id": "n", "action": "clicked", "action_id": 7}, "action_id must be a string or null"),
    ({"notification_id": "n", "action": "seen", "device_id": ["x"]}, "device_id must be a string or null"),
    ({"notification_id": "n", "action": "seen", "channel": "pigeon"}, "channel must be one of push, email"),
    ({"notification_id": "n", "action": "seen", "mood": "happy"}, "unknown fields mood"),
])
def test_bad_engagement_reports_are_refused_with_the_reason(gateway, body, reason):
    with api(gateway, unique("ivy")) as client:
        content = body if isinstance(body, str) else json.dumps(body)
        response = client.post("/api/engagement", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["error"].startswith(reason), response.text


def test_a_seen_report_is_published_with_the_notifications_attribution(gateway, sink):
    user, nid = unique("ida"), unique("n")
    sink(in_app_job(user, nid, category="ci", campaign_id="launch", variant="A"))
    with api(gateway, user) as client:
        assert client.post("/api/engagement", json={"notification_id": nid, "action": "seen",
                                                    "device_id": "tab-1"}).status_code == 202
    [seen] = records_for(user, ENGAGEMENT, 1)
    assert summary(seen) == (nid, "seen", "tab-1", "in_app", "ci", "launch", "A")


def test_presentation_settings_are_validated_and_saved_with_their_defaults(gateway):
    with api(gateway, unique("pam")) as client:
        for duration in (2, 31):
            refused = client.put("/api/preferences", json={"presentation": {"duration_seconds": duration}})
            assert (refused.status_code, refused.json()) == (400, {
                "error": f"presentation.duration_seconds must be from 3 to 30, not {duration}"})
        mistyped = client.put("/api/preferences", json={"presentation": {"duration_seconds": "long"}})
        assert mistyped.status_code == 400 and mistyped.json()["error"].startswith("field presentation.duration_seconds")
        saved = client.put("/api/preferences", json={"presentation": {"auto_dismiss": False, "duration_seconds": 12}})
        assert saved.status_code == 200
        assert client.get("/api/preferences").json()["presentation"] == {
            "sound": True, "vibration": True, "auto_dismiss": False, "duration_seconds": 12}


def test_the_demo_address_keeps_the_user_it_names(gateway):
    response = httpx.get(f"{gateway}/?user=bob&transport=sse", follow_redirects=False)
    assert response.status_code in (302, 307)
    assert response.headers["location"] == "/static/demo.html?user=bob&transport=sse"
    assert httpx.get(f"{gateway}/", follow_redirects=False).headers["location"] == "/static/demo.html"
