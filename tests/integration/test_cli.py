"""The notifyflow command against the running stack: send, tail, dlq, gateway, and clear errors."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime

import httpx
import websockets

from connectors.kafka import produce_all, producer
from gateway.auth import issue_token
from kernel.settings import SERVICE_VARS
from kernel.topics import codec_for
from notifyflow.stack import free_port, stop_process, wait_until

from cli_harness import notifyflow


def tail_values(topic: str) -> list[dict]:
    result = notifyflow("tail", topic, "--idle", "2")
    assert result.returncode == 0, result.stderr
    return [json.loads(line)["value"] for line in result.stdout.splitlines()]


def test_send_from_flags_then_tail_shows_it(stack):
    user = f"user-{uuid.uuid4()}"
    sent = notifyflow("send", "--user", user, "--title", "Hello", "--body", "from the CLI",
                      "--category", "social", "--priority", "high", "--count", "2")
    assert sent.returncode == 0, sent.stderr
    mine = [v for v in tail_values("notify.events") if v.get("user_id") == user]
    assert len(mine) == 2
    assert len({v["id"] for v in mine}) == 2
    assert {(v["content"]["title"], v["content"]["body"], v["category"], v["priority"]) for v in mine} == {
        ("Hello", "from the CLI", "social", "high")}


def test_send_from_a_json_file(stack, tmp_path):
    user = f"user-{uuid.uuid4()}"
    request = {"user_id": user, "type": "warning", "category": "security", "priority": "critical",
               "content": {"title": "New sign-in", "body": "From Lisbon", "actions": [
                   {"id": "deny", "title": "It wasn't me", "action": "deny_login"}]},
               "metadata": {"source_app": "auth", "expires_at": "2030-01-01T00:00:00+00:00"},
               "tenant": "acme"}
    path = tmp_path / "request.json"
    path.write_text(json.dumps(request))
    sent = notifyflow("send", "--file", str(path))
    assert sent.returncode == 0, sent.stderr
    [value] = [v for v in tail_values("notify.events") if v.get("user_id") == user]
    assert value["content"]["actions"][0]["title"] == "It wasn't me"
    assert value["metadata"]["expires_at"] == "2030-01-01T00:00:00+00:00"


def test_an_invalid_request_file_is_refused_with_the_field_named(stack, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"user_id": "u1", "type": "info", "category": "x", "priority": "urgent",
                                "content": {"title": "t", "body": "b"}, "metadata": {"source_app": "a"},
                                "tenant": "t"}))
    result = notifyflow("send", "--file", str(path))
    assert result.returncode == 2
    assert "priority" in result.stderr
    assert "Traceback" not in result.stderr


def test_dlq_groups_dead_letters_by_stage_and_reason(stack):
    codec = codec_for("notify.dlq")
    now = datetime.now(UTC)
    marker = f"reason-{uuid.uuid4()}"
    letters = [{"original": b"\x00junk", "original_key": None, "topic": "notify.events", "partition": 0,
                "offset": i, "stage": "decode", "reason": marker, "attempts": 1, "first_seen": now,
                "last_seen": now, "schema": None} for i in range(3)]
    produce_all(producer(os.environ["KAFKA_BOOTSTRAP_SERVERS"]), "notify.dlq",
                [(b"u", codec.encode(letter)) for letter in letters])
    result = notifyflow("dlq", "--idle", "2")
    assert result.returncode == 0, result.stderr
    [group_row] = [line for line in result.stdout.splitlines() if marker in line and "│ 3" in line]
    assert "decode" in group_row


def test_user_mistakes_get_one_line_errors_not_tracebacks(stack, tmp_path):
    unknown = notifyflow("tail", "notify.nope")
    assert unknown.returncode == 2
    assert "unknown topic 'notify.nope'" in unknown.stderr

    missing = notifyflow("send", "--user", "u1")
    assert missing.returncode == 2
    assert "--title" in missing.stderr

    bare = {k: v for k, v in os.environ.items()
            if k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "REDIS_URL", "CLICKHOUSE_URL")}
    no_stack = notifyflow("tail", "notify.events", env={**bare, "NOTIFYFLOW_HOME": str(tmp_path)})
    assert no_stack.returncode == 2
    assert "notifyflow stack up" in no_stack.stderr
    for result in (unknown, missing, no_stack):
        assert "Traceback" not in result.stderr


def test_the_demo_runs_the_flows_on_its_own_stack_and_shows_what_was_delivered(tmp_path):
    # No service URLs: the demo starts (and stops) its own embedded stack, as on a fresh machine.
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_VARS} | {"NOTIFYFLOW_HOME": str(tmp_path)}
    result = notifyflow("demo", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "2 new messages" in out  # the duplicate merged
    assert "no marketing consent" in out and "deferred" in out
    center = out[out.index("notification center"):]
    assert "New sign-in from Lisbon" in center and "Build #42 failed" in center
    rollups = out[out.index("analytics (ClickHouse rollups per channel)"):].splitlines()
    assert any(line.split("│")[1].strip() == "in_app" for line in rollups if line.count("│") > 2)
    assert "local stack stopped" in out


def test_the_gateway_logs_requests_without_tokens_or_addresses(stack, tmp_path):
    port, secret, log = free_port(), "cli-gateway-secret-of-32-bytes!!", tmp_path / "gateway.log"
    token = issue_token("ana", secret)
    with open(log, "wb") as out:
        gateway = subprocess.Popen([sys.executable, "-m", "notifyflow.cli", "gateway", "--port", str(port),
                                    "--log-level", "info"], stdout=out, stderr=subprocess.STDOUT,
                                   env={**os.environ, "GATEWAY_JWT_SECRET": secret}, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: httpx.get(f"{base}/health").raise_for_status(), "the gateway", gateway, log)
        httpx.get(f"{base}/api/notifications?token={token}").raise_for_status()
        httpx.put(f"{base}/api/preferences", headers={"authorization": f"Bearer {token}"},
                  json={"email": "ana.private@example.com", "timezone": "Mars/Base"})

        async def connect():
            async with websockets.connect(f"ws://127.0.0.1:{port}/ws?token={token}&device=d1"):
                pass

        asyncio.run(connect())
    finally:
        stop_process(gateway)
    written = log.read_text()
    # The WebSocket handshake's query string (the token) is not even kept (gateway.transport): its line has the path.
    assert "/api/notifications?token=[redacted]" in written and '"WebSocket /ws" [accepted]' in written
    assert "Logging error" not in written  # the access log's formatter reads the masked arguments
    assert token not in written and token.split(".")[2] not in written and "ana.private" not in written
