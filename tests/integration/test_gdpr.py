"""GDPR against the real stack: `notifyflow user export|erase` and `notifyflow retention`, with the
notification flow and the analytics process running, as in production."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg.types.json import Jsonb

from analytics.pseudonym import UserKeys
from connectors import redis
from kernel.settings import SERVICE_VARS
from notifyflow import userdata
from notifyflow.processes import FlowProcess
from notifyflow.stack import free_port
from sinks.claims import claim_prefix

from analytics_harness import SECRET, analytics_process, wait_for
from analytics_harness import status as analytics_status
from flow_harness import Outputs, device, jobs, preferences, publish, request, statuses, unique
from cli_harness import notifyflow

NOW = datetime.now(UTC)


def db() -> psycopg.Connection:
    return psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)


def claim_key(notification_id: str, user_id: str, device_id: str) -> str:
    return f"claim:{notification_id}:{user_id}:push:{device_id}:0"


def seed(user: str) -> dict:
    """What the platform stores for a user who has used it: every table, Redis claims, compacted topics."""
    email = f"{user}@Example.com"
    prefs = preferences(user, email=email, marketing_consent=True)
    publish("notify.preferences", [prefs])
    publish("notify.devices", [device(user, "phone-1", f"token-{user}")])
    publish("notify.presence", [{"user_id": user, "device_id": "phone-1", "status": "online", "at": NOW,
                                 "gateway_id": "gw-1"}])
    with db() as conn:
        for n, deleted_at in ((1, None), (2, NOW)):
            conn.execute("INSERT INTO notifications (id, user_id, type, category, priority, title, body, created_at,"
                         " deleted_at) VALUES (%s, %s, 'info', 'messages', 'normal', %s, 'body', %s, %s)",
                         (f"{user}-n{n}", user, f"hello {user}", NOW, deleted_at))
        conn.execute("INSERT INTO preferences (user_id, settings) VALUES (%s, %s)",
                     (user, Jsonb({"email": email, "marketing_consent": True})))
        conn.execute("INSERT INTO devices (user_id, device_id, platform, token) VALUES (%s, 'phone-1', 'android', %s)",
                     (user, f"token-{user}"))
        conn.execute("INSERT INTO audience_members (audience, user_id) VALUES ('beta', %s)", (user,))
        conn.execute("INSERT INTO email_suppressions (address, reason) VALUES (%s, 'hard bounce')", (email.lower(),))
    redis.client(os.environ["REDIS_URL"]).set(claim_key(f"{user}-n1", user, "phone-1"), b"sent")
    return prefs


def stored_rows(user: str) -> dict[str, int]:
    with db() as conn:
        return {table: len(rows) for table, rows in userdata.postgres_rows(
            conn, user, "default", [f"{user}@example.com"]).items()}


def export(user: str, analytics_url: str) -> dict:
    result = notifyflow("user", "export", user, "--idle", "1", "--analytics-url", analytics_url,
                        env={**os.environ, "ANALYTICS_SECRET": SECRET})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


EVERY_TABLE = {"notifications": 2, "preferences": 1, "devices": 1, "audience_members": 1, "email_suppressions": 1}


def test_export_returns_the_users_data_and_nothing_of_another_user(stack):
    user = unique("gdpr-ana")
    neighbour = f"{user}-2"  # shares a prefix: must not be mistaken for the user
    seed(user)
    seed(neighbour)
    nowhere = f"http://127.0.0.1:{free_port()}"
    result = notifyflow("user", "export", user, "--idle", "1", "--analytics-url", nowhere)
    assert result.returncode == 0, result.stderr
    assert f"no analytics process at {nowhere}" in result.stderr and "Traceback" not in result.stderr
    data = json.loads(result.stdout)
    assert data["clickhouse"] is None  # said on stderr, not silently empty
    assert {table: len(rows) for table, rows in data["postgres"].items()} == EVERY_TABLE
    assert [n["id"] for n in data["postgres"]["notifications"]] == [f"{user}-n1", f"{user}-n2"]
    assert data["postgres"]["notifications"][1]["deleted_at"] is not None  # the delete tombstone too
    assert data["postgres"]["email_suppressions"][0]["address"] == f"{user}@example.com"
    assert data["redis"]["delivery_claims"] == [claim_key(f"{user}-n1", user, "phone-1")]
    kafka = data["kafka"]
    assert [p["email"] for p in kafka["notify.preferences"]] == [f"{user}@Example.com"]
    assert [(d["device_id"], d["token"]) for d in kafka["notify.devices"]] == [("phone-1", f"token-{user}")]
    assert [p["status"] for p in kafka["notify.presence"]] == ["online"]
    assert neighbour not in json.dumps(data)

    nobody = json.loads(notifyflow("user", "export", unique("nobody"), "--idle", "1", "--analytics-url",
                                   nowhere).stdout)  # an unknown user is not an error: nothing is stored
    assert all(not rows for rows in nobody["postgres"].values())
    assert nobody["redis"] == {"delivery_claims": []}
    assert all(not records for records in nobody["kafka"].values())


def test_a_tenants_user_is_exported_and_erased_without_touching_another_tenants_twin(stack):
    user, notification = unique("gdpr-twin"), unique("order")  # both tenants' senders chose the same id
    tenants = (unique("acme"), unique("globex"))
    claims = redis.client(os.environ["REDIS_URL"])
    with db() as conn:
        for tenant in tenants:
            conn.execute("INSERT INTO notifications (tenant, id, user_id, type, category, priority, title, body,"
                         " created_at) VALUES (%s, %s, %s, 'info', 'orders', 'normal', 'Shipped', '', %s)",
                         (tenant, notification, user, NOW))
            claims.set(f"{claim_prefix(tenant)}{notification}:{user}:push:phone-1:0", b"sent")
    nowhere = f"http://127.0.0.1:{free_port()}"
    exported = json.loads(notifyflow("user", "export", user, "--tenant", tenants[0], "--idle", "1",
                                     "--analytics-url", nowhere).stdout)
    assert [(n["tenant"], n["id"]) for n in exported["postgres"]["notifications"]] == [(tenants[0], notification)]
    assert exported["redis"]["delivery_claims"] == [f"claim@{tenants[0]}:{notification}:{user}:push:phone-1:0"]

    erased = notifyflow("user", "erase", user, "--tenant", tenants[0], "--yes", "--idle", "1")
    assert erased.returncode == 0, erased.stderr
    with db() as conn:
        kept = {table: len(rows) for table, rows in userdata.postgres_rows(conn, user, tenants[1], []).items()}
        gone = {table: len(rows) for table, rows in userdata.postgres_rows(conn, user, tenants[0], []).items()}
    assert kept == {**dict.fromkeys(EVERY_TABLE, 0), "notifications": 1}
    assert gone == dict.fromkeys(EVERY_TABLE, 0)
    assert claims.exists(f"claim@{tenants[1]}:{notification}:{user}:push:phone-1:0")
    assert not claims.exists(f"claim@{tenants[0]}:{notification}:{user}:push:phone-1:0")


@pytest.fixture
def flows(stack, tmp_path):
    (tmp_path / "analytics").mkdir()
    with FlowProcess("notifications", tmp_path / "recovery", tmp_path / "flow.log") as flow, \
            analytics_process(tmp_path / "analytics") as analytics:
        yield flow, analytics


def test_erase_removes_the_user_everywhere_and_leaves_others_alone(flows):
    flow, analytics = flows
    gone, kept = unique("gdpr-gone"), unique("gdpr-kept")
    for user in (gone, kept):
        seed(user)
    # Analytics rows of both (pseudonymous), stored before the erasure.
    # Of the default tenant's users, whom `user erase` without --tenant erases.
    publish("notify.status", [analytics_status(gone, n, "sent", user_id=user, tenant="default") for n, user in
                              enumerate((gone, gone, kept))])
    keys = UserKeys(SECRET.encode())

    def rows_of(user: str) -> str:
        pairs = ", ".join(f"({version}, '{key}')" for version, key in keys.every_version(user, datetime.now(UTC)))
        return f"SELECT count() FROM notifyflow.events_raw WHERE (key_version, user_key) IN ({pairs})"

    # The analytics process reads every status of the session first: room for that backlog.
    wait_for(analytics, rows_of(gone), [[2]], timeout_s=180)
    assert [row["notification_id"] for row in export(gone, analytics.url)["clickhouse"]["events_raw"]] == [
        f"{gone}-0", f"{gone}-1"]
    outputs = Outputs(flow)
    try:
        outputs.settle()
        # A scheduled notification each, held in the flow's state until scheduled_at.
        due = datetime.now(UTC) + timedelta(seconds=30)  # room for the erasure to run first, on a busy machine
        held = {user: request(user, "Later", "scheduled", scheduled_at=due) for user in (gone, kept)}
        publish("notify.events", list(held.values()))
        outputs.wait_for({gone, kept}, lambda f: sum(s["status"] == "deferred" for s in statuses(f)) == 2)
        # Rows stored after the tombstone would stay: wait until analytics has the flow's last status
        # of the user (a user's statuses share a partition, so the earlier ones are in too).
        wait_for(analytics, f"{rows_of(gone)} AND status = 'deferred'", [[1]])

        erased = notifyflow("user", "erase", gone, "--yes", "--idle", "1")
        assert erased.returncode == 0, erased.stderr
        assert "postgres notifications" in erased.stdout
        assert datetime.now(UTC) < due, "the erasure ended after the scheduled time: nothing was left to drop"

        # The flow dropped the erased user's state: the other user's scheduled notification goes out,
        # the erased user's never does.
        outputs.wait_for({kept}, lambda f: any(j["notification_id"] == held[kept]["id"] for _, j in jobs(f)),
                         timeout_s=60)
        outputs.settle()
        assert not [j for _, j in jobs(outputs.wait_for({gone}, bool)) if j["notification_id"] == held[gone]["id"]]
        # ClickHouse: the erased user's raw rows are gone, the other user's stay.
        wait_for(analytics, rows_of(gone), [[0]])
        assert analytics.sql(rows_of(kept))[0][0] >= 1
        # No stored consent any more: marketing is not sent; the other user still consents.
        sale = {user: request(user, "Sale", "20% off", category="marketing", type="marketing", priority="low")
                for user in (gone, kept)}
        publish("notify.events", list(sale.values()))
        found = outputs.wait_for({gone, kept}, lambda f: {s["notification_id"] for s in statuses(f)} >= {
            sale[gone]["id"], sale[kept]["id"]})
    finally:
        outputs.close()
    outcome = {s["user_id"]: (s["status"], s["reason"]) for s in statuses(found)
               if s["notification_id"] in (sale[gone]["id"], sale[kept]["id"])}
    assert outcome[gone] == ("dropped", "no marketing consent")
    assert outcome[kept][0] == "requested"

    # PostgreSQL and Redis hold nothing of the erased user; the other user's data is untouched.
    assert stored_rows(gone) == dict.fromkeys(EVERY_TABLE, 0)
    assert stored_rows(kept) == EVERY_TABLE
    assert userdata.claim_keys(redis.client(os.environ["REDIS_URL"]), gone) == []
    assert userdata.claim_keys(redis.client(os.environ["REDIS_URL"]), kept) != []
    # What stays on the compacted topics are the tombstones: ids, nothing else.
    after = export(gone, analytics.url)
    assert after["clickhouse"] == {"events_raw": []} or all(  # or only the marketing request's, made after
        row["notification_id"] == sale[gone]["id"] for row in after["clickhouse"]["events_raw"])
    after = after["kafka"]
    assert [(p["deleted"], p["email"]) for p in after["notify.preferences"]] == [(True, None)]
    assert [(d["active"], d["token"]) for d in after["notify.devices"]] == [(False, None)]
    assert [(p["status"], p["gateway_id"]) for p in after["notify.presence"]] == [("offline", None)]


def test_retention_deletes_expired_history_and_claims_and_keeps_recent_ones(stack):
    user = unique("gdpr-old")
    now = datetime.now(UTC)
    ages = {"old": now - timedelta(days=31), "old-deleted": now - timedelta(days=40),
            "recent": now - timedelta(days=29), "recent-deleted": now - timedelta(days=2)}
    with db() as conn:
        for name, created in ages.items():
            deleted_at = created + timedelta(days=1) if name.endswith("deleted") else None
            conn.execute("INSERT INTO notifications (id, user_id, type, category, priority, title, body, created_at,"
                         " deleted_at) VALUES (%s, %s, 'info', 'messages', 'normal', '', '', %s, %s)",
                         (f"{user}-{name}", user, created, deleted_at))
        for name, active, age in (("retired-old", False, 31), ("retired-recent", False, 29), ("active-old", True, 90)):
            conn.execute("INSERT INTO devices (user_id, device_id, platform, active, registered_at)"
                         " VALUES (%s, %s, 'ios', %s, %s)", (user, name, active, now - timedelta(days=age)))

    result = notifyflow("retention")
    assert result.returncode == 0, result.stderr
    assert "notification history" in result.stdout

    with db() as conn:
        kept = {table: sorted(row[0] for row in conn.execute(query, (f"{user}%",)))
                for table, query in (("notifications", "SELECT id FROM notifications WHERE user_id LIKE %s"),
                                     ("devices", "SELECT device_id FROM devices WHERE user_id LIKE %s"))}
    assert kept == {"notifications": [f"{user}-recent", f"{user}-recent-deleted"],
                    "devices": ["active-old", "retired-recent"]}


def test_without_a_stack_the_commands_say_how_to_start_one(tmp_path):
    bare = {k: v for k, v in os.environ.items() if k not in SERVICE_VARS} | {"NOTIFYFLOW_HOME": str(tmp_path)}
    for args in (("user", "export", "ana"), ("user", "erase", "ana", "--yes"), ("retention",),
                 ("dlq", "replay", "--stage", "validate")):
        result = notifyflow(*args, env=bare)
        assert result.returncode == 2 and "notifyflow stack up" in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
