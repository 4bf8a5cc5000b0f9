"""Two tenants that both have a user with the same id, against the real stack: the notification flow and
the in-app delivery flow run as deployed, the gateway serves each tenant's `alice` with a token naming her
tenant. Neither reads, changes or is told the other's notifications, preferences or live events; one's
unsubscribe link changes only her preferences (in the gateway and in the flow); analytics sees two people;
export and erasure of one leave the other as she was."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime

import httpx
import psycopg
import websockets

from analytics.pseudonym import UserKeys
from analytics.rows import COLUMNS, Rows
from gateway.auth import issue_token
from kernel.requests import user_key
from kernel.topics import codec_for
from kernel.unsubscribe import Unsubscribe, secret_from_env
from notifyflow.stack import free_port

from cli_harness import notifyflow
from flow_harness import delivering, publish, request, statuses, unique
from gateway_harness import GATEWAY_SECRET, records_for

ONE_CLICK = {"content": b"List-Unsubscribe=One-Click",
             "headers": {"content-type": "application/x-www-form-urlencoded"}}
SOCIAL_OFF = {"social": {"enabled": False, "channels": [], "priority_override": None}}


def api(gateway: str, tenant: str | None, user: str) -> httpx.Client:
    """A client with the user's token: `tenant` None is a token without the claim (the default tenant)."""
    token = issue_token(user, GATEWAY_SECRET, **({"tenant": tenant} if tenant else {}))
    return httpx.Client(base_url=gateway, headers={"authorization": f"Bearer {token}"}, timeout=30)


def socket_url(gateway: str, tenant: str, user: str) -> str:
    return f"ws{gateway.removeprefix('http')}/ws?token={issue_token(user, GATEWAY_SECRET, tenant=tenant)}"


async def next_notification(socket) -> dict:
    """The socket's next notification event (the flows take their time on a busy machine)."""
    while True:
        event = json.loads(await asyncio.wait_for(socket.recv(), 120))
        if event["event"].startswith("notification."):
            return event


def titles(client: httpx.Client) -> list[str]:
    return [item["title"] for item in client.get("/api/notifications").json()["items"]]


def export(user: str, tenant: str) -> dict:
    nowhere = f"http://127.0.0.1:{free_port()}"  # no analytics process: its part is null
    result = notifyflow("user", "export", user, "--tenant", tenant, "--idle", "1", "--analytics-url", nowhere)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_two_tenants_users_of_the_same_id_share_nothing(stack, gateway, tmp_path):
    a, b, alice = unique("tenant-a"), unique("tenant-b"), unique("alice")
    with api(gateway, a, alice) as as_a, api(gateway, b, alice) as as_b, api(gateway, None, alice) as as_default:
        assert as_a.put("/api/preferences", json={"email": f"{alice}@a.example"}).status_code == 200
        # B's alice wants nothing of `social`: A's alice still gets it.
        assert as_b.put("/api/preferences", json={"email": f"{alice}@b.example", "categories": SOCIAL_OFF}
                        ).status_code == 200
        assert as_a.get("/api/preferences").json()["categories"] == {}

        for_a = request(alice, "For A's alice", category="social", tenant=a)
        for_b = request(alice, "For B's alice", category="social", tenant=b)
        marker = request(alice, "B's own news", category="messages", tenant=b)

        async def both_listen():
            async with websockets.connect(socket_url(gateway, a, alice)) as on_a, \
                    websockets.connect(socket_url(gateway, b, alice)) as on_b:
                await asyncio.to_thread(publish, "notify.events", [for_a, for_b])
                first_on_a = await next_notification(on_a)
                # Published once A's socket had its notification: had B's socket been told of A's, that
                # would come first.
                await asyncio.to_thread(publish, "notify.events", [marker])
                return first_on_a, await next_notification(on_b)

        with delivering(tmp_path, dict(os.environ), ("in_app", "normal")) as outputs:
            on_a, on_b = asyncio.run(both_listen())
            found = outputs.wait_for({alice}, lambda f: {s["notification_id"] for s in statuses(f)} >= {
                for_a["id"], for_b["id"], marker["id"]} and sum(s["status"] == "delivered" for s in statuses(f)) >= 2)

            # A's unsubscribe link (the email sink makes it with her tenant) changes A's preferences only.
            link = Unsubscribe.for_email(alice, "social", for_a["id"], datetime.now(UTC), tenant=a)
            assert as_a.post("/unsubscribe", params=link.params(secret_from_env()), **ONE_CLICK).status_code == 200
            [engagement] = records_for(user_key(a, alice), "notify.engagement", 1)
            # The flow turns A's social email off in the preferences it publishes (after the gateway's own).
            published = records_for(user_key(a, alice), "notify.preferences", 2, timeout_s=90)
        assert (on_a["notification"]["title"], on_b["notification"]["title"]) == ("For A's alice", "B's own news")
        outcome = {(s["tenant"], s["notification_id"]): s["status"] for s in statuses(found)
                   if s["status"] in ("delivered", "dropped")}
        assert outcome == {(a, for_a["id"]): "delivered", (b, for_b["id"]): "dropped", (b, marker["id"]): "delivered"}

        # Each tenant's alice reads her own notification center, and the default tenant's alice has none.
        assert (titles(as_a), titles(as_b), titles(as_default)) == (["For A's alice"], ["B's own news"], [])
        assert as_b.post(f"/api/notifications/{for_a['id']}/read").status_code == 404

        assert (engagement["tenant"], engagement["action"], engagement["category"]) == (a, "unsubscribed", "social")
        assert [p["tenant"] for p in published] == [a, a]
        assert "email" not in published[-1]["categories"]["social"]["channels"]
        assert "email" not in as_a.get("/api/preferences").json()["categories"]["social"]["channels"]
        assert as_b.get("/api/preferences").json()["categories"] == SOCIAL_OFF

        # Analytics: two people, each under her own pseudonym.
        keys, delivered = UserKeys(b"tenant-isolation-secret-0123456789"), {}
        for status in statuses(found):
            if status["status"] == "delivered":
                row = Rows(keys).item("notify.status", 0, 0, None, codec_for("notify.status").encode(status),
                                      datetime.now(UTC))["row"]
                delivered[status["tenant"]] = dict(zip(COLUMNS, row))["user_key"]
        assert delivered[a] != delivered[b]
        assert delivered[a] == keys.of(alice, next(s["at"] for s in statuses(found) if s["tenant"] == a
                                                   and s["status"] == "delivered"), a)[1]

        # Export names A's alice's data only; erasing her leaves B's alice as she was.
        data = export(alice, a)
        assert [n["id"] for n in data["postgres"]["notifications"]] == [for_a["id"]]
        assert {n["tenant"] for n in data["postgres"]["notifications"] + data["postgres"]["preferences"]} == {a}
        assert {p["tenant"] for p in data["kafka"]["notify.preferences"]} == {a}
        assert marker["id"] not in json.dumps(data) and f"{alice}@b.example" not in json.dumps(data)
        erased = notifyflow("user", "erase", alice, "--tenant", a, "--yes", "--idle", "1")
        assert erased.returncode == 0, erased.stderr
        assert (titles(as_a), titles(as_b)) == ([], ["B's own news"])
        assert as_a.get("/api/preferences").json()["email"] is None  # the defaults again
        assert as_b.get("/api/preferences").json()["email"] == f"{alice}@b.example"
        assert [p["deleted"] for p in export(alice, a)["kafka"]["notify.preferences"]] == [True]
        assert [n["id"] for n in export(alice, b)["postgres"]["notifications"]] == [marker["id"]]
    with psycopg.connect(stack.urls["DATABASE_URL"]) as db:
        assert db.execute("SELECT tenant, id FROM notifications WHERE user_id = %s", (alice,)).fetchall() == [
            (b, marker["id"])]
