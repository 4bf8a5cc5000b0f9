"""10,000 malformed and hostile records on notify.events, through the running notification flow
and the in-app delivery flows: the flows never crash, and every record is either dead-lettered
with its stage and reason or handled (delivered sanitised, or dropped/expired with a status)."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta

import psycopg

from connectors.kafka import produce_all, producer
from kernel import validate
from kernel.requests import device_record, preferences_record
from kernel.topics import LANES, codec_for
from notifyflow.processes import FlowProcess, delivery_flow

from flow_harness import Outputs, request

RECORDS = 10_000
SCRIPTS = ['<script>alert(1)</script>', '<img src=x onerror=alert(1)>', '"><svg onload=alert(1)>',
           "javascript:alert(document.cookie)", "{{ 7*7 }}{% raw %}", "\u202eevil\u0000\u001b[31m"]
HOSTILE_URLS = ["javascript:alert(1)", "data:text/html,<script>alert(1)</script>", "file:///etc/passwd",
                "vbscript:msgbox(1)", "https://exa mple.com/x.png", "https://example.com/\x00.png", "http://plain.example",
                "//no-scheme.example/x", "intent://scan#Intent;end"]
EVENTS = codec_for("notify.events")


def valid(key: str, rng: random.Random, title: str | None = None, body: str = "body") -> dict:
    record = request(key, title or f"Fuzz {key}", body, priority=rng.choice(("normal", "high", "critical", "low")))
    record["id"] = key
    return record


def malformed(n: int, rng: random.Random) -> tuple[bytes, str]:
    """One record of kind n % 10, and what it is."""
    key, now = f"fuzz-{n}", datetime.now(UTC)
    kind = n % 10
    if kind == 0:
        return rng.randbytes(rng.randrange(0, 300)), "random bytes"
    if kind == 1:
        whole = EVENTS.encode(valid(key, rng))
        return whole[:rng.randrange(0, len(whole))], "truncated Avro"
    if kind == 2:
        wrong = [codec_for("notify.preferences").encode(preferences_record(key)),
                 codec_for("notify.devices").encode(device_record(key, "d1", "android", token="t"))]
        return rng.choice(wrong), "another schema"
    if kind == 3:
        oversize = rng.choice([{"title": "T" * rng.randrange(201, 5000)}, {"body": "B" * rng.randrange(4001, 20000)},
                               {"actions": [{"id": f"a{i}", "action": f"a{i}", "title": "x", "icon": None} for i in range(4)]}])
        record = valid(key, rng)
        record["content"].update(oversize)
        return EVENTS.encode(record), "oversize field"
    if kind == 4:
        encoded = EVENTS.encode(valid(key, rng, title="MARKMARK"))
        return encoded.replace(b"MARKMARK", rng.choice([b"\xff\xfe\xfd\xfc\xc3\x28\xa0\xa1", b"\xed\xa0\x80\xf8\x88\x80\x80\x80"])), "invalid UTF-8"
    if kind == 5:
        script = rng.choice(SCRIPTS)
        return EVENTS.encode(valid(key, rng, title=f"Hi {script}", body=f"{script} {script}")), "script payload"
    if kind == 6:
        record = valid(key, rng)
        url = rng.choice(HOSTILE_URLS)
        field = rng.choice(["image_url", "icon", "deep_link", "action"])
        if field == "deep_link":
            record["metadata"]["deep_link"] = url
        elif field == "action":
            record["content"]["actions"] = [{"id": "open", "action": url, "title": "Open", "icon": None}]
        else:
            record["content"][field] = url
        return EVENTS.encode(record), "hostile URL"
    if kind == 7:
        record = valid(key, rng)
        if rng.random() < 0.5:
            record["metadata"]["created_at"] = now + timedelta(days=rng.randrange(1, 36500))
        else:
            record["scheduled_at"] = now + timedelta(days=rng.randrange(366, 36500))
        return EVENTS.encode(record), "far-future timestamp"
    if kind == 8:
        record = valid(key, rng)
        record["metadata"]["created_at"] = now - timedelta(days=rng.randrange(1, 20000))
        record["metadata"]["expires_at"] = record["metadata"]["created_at"] + timedelta(hours=1)
        return EVENTS.encode(record), "past timestamp"
    frame = b"\x00" + rng.randbytes(4) + rng.randbytes(rng.randrange(0, 100))
    return frame, "schema-registry framing around garbage"


def test_ten_thousand_hostile_records_never_crash_the_flows_and_all_are_accounted_for(stack, tmp_path):
    rng = random.Random(2026)
    records = {f"fuzz-{n}": malformed(n, rng) for n in range(RECORDS)}
    flows = [FlowProcess("notifications", tmp_path / "recovery", tmp_path / "flow.log")]
    flows += [FlowProcess(delivery_flow("in_app", lane), tmp_path / f"in-app-{lane}", tmp_path / f"in-app-{lane}.log")
              for lane in LANES]
    for flow in flows:
        flow.start()
    try:
        outputs = Outputs(flows[0])
        produce_all(producer(stack.urls["KAFKA_BOOTSTRAP_SERVERS"]), "notify.events",
                    [(key.encode(), value) for key, (value, _) in records.items()], timeout_s=60)
        handled = outputs.wait_for(set(records), lambda seen: len(accounted(seen)) >= RECORDS, timeout_s=120)
        time.sleep(3)  # in-app rows of the last accepted records
        for flow in flows:
            flow.check()  # still running: nothing crashed them
    finally:
        for flow in flows:
            flow.stop()

    outcomes = accounted(handled)
    assert set(outcomes) == set(records)
    dead = {key for key, outcome in outcomes.items() if outcome[0] == "dlq"}
    kinds = {what for key, (_, what) in records.items() if key in dead}
    assert kinds >= {"random bytes", "truncated Avro", "another schema", "oversize field", "invalid UTF-8",
                     "hostile URL", "far-future timestamp", "schema-registry framing around garbage"}
    assert all(outcomes[key][1] for key in dead)  # every dead letter has a reason
    for key, (value, what) in records.items():
        if what in ("hostile URL", "far-future timestamp", "oversize field", "invalid UTF-8", "random bytes"):
            assert key in dead, (what, outcomes[key])
        if what == "past timestamp":
            assert outcomes[key] == ("status", "expired")
    scripted = [key for key, (_, what) in records.items() if what == "script payload"]
    with psycopg.connect(stack.urls["DATABASE_URL"]) as db:
        rows = db.execute("SELECT id, title, body, content FROM notifications WHERE id = ANY(%s)", [scripted]).fetchall()
    assert len(rows) == len(scripted)  # accepted and delivered...
    for _, title, body, content in rows:  # ...as text: nothing in them runs anywhere
        assert not validate.CONTROL_CHARS.search(title + body)
        assert "<script" not in content["html_body"] and "<img" not in content["html_body"]
        assert "<svg" not in content["html_body"]


def accounted(seen: list[tuple[str, dict]]) -> dict[str, tuple[str, str]]:
    """Per record key: ("dlq", reason), or ("status", the first outcome of its notification)."""
    found = {}
    for topic, value in seen:
        if topic == "notify.dlq":
            key = (value["original_key"] or b"").decode(errors="replace")
            found.setdefault(key, ("dlq", value["reason"]))
        elif topic == "notify.status" and value["notification_id"].startswith("fuzz-"):
            found.setdefault(value["notification_id"], ("status", value["status"]))
    return {key: outcome for key, outcome in found.items() if key.startswith("fuzz-")}
