"""Schemas evolve without breaking what is already on the topics: a record written with an earlier
version (schemas/history/) still decodes, plain or through a Schema Registry, into today's shape."""

import datetime as dt
import io
import json
from pathlib import Path

import fastavro
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

import schemas
from schemas import AvroCodec, CodecError, load_schema
from schemas.codec import history

HISTORY = sorted((Path(schemas.__file__).parent / "history").glob("*.avsc"))
NOW = dt.datetime(2026, 12, 1, 9, 30, tzinfo=dt.UTC)
OLD_RECORDS = {
    "PreferencesUpdated": {"user_id": "alice", "updated_at": NOW, "deleted": False, "enabled": True,
                           "quiet_hours": None, "digest": None, "marketing_consent": True, "email": "a@example.com",
                           "phone": None, "locale": "fr", "timezone": "Europe/Paris",
                           "channels": {"email": {"enabled": True, "categories": [], "frequency": "hourly",
                                                  "emergency_only": False}},
                           "categories": {"social": {"enabled": False, "channels": [], "priority_override": None}}},
    "EngagementEvent": {"notification_id": "n-1", "user_id": "alice", "action": "archived", "action_id": None,
                        "device_id": "d-1", "channel": "in_app", "at": NOW, "campaign_id": None, "variant": None,
                        "category": "social"},
    "DeviceRegistered": {"user_id": "alice", "device_id": "d-1", "platform": "android", "token": "tok",
                         "web_push": None, "app_version": "1.2", "registered_at": NOW, "active": True},
    "PresenceChanged": {"user_id": "alice", "device_id": "d-1", "status": "online", "at": NOW, "gateway_id": "g-1"},
    "DeliveryStatus": {"notification_id": "n-1", "user_id": "alice", "channel": "push", "device_id": None,
                       "status": "expired", "attempt": 1, "provider": "fcm", "reason": None, "category": "social",
                       "campaign_id": None, "variant": None, "platform": None, "created_at": NOW, "at": NOW,
                       "tenant": "default"},
    "NotificationRequested": {"id": "r-1", "tenant": "acme", "user_id": "alice", "audience": None, "type": "info",
                              "category": "social", "priority": "normal",
                              "content": {"title": "Hi", "body": "Lunch?", "image_url": None, "icon": None,
                                          "badge": None, "actions": []},
                              "metadata": {"created_at": NOW, "expires_at": None, "deep_link": None, "payload": {},
                                           "source_app": "chat", "campaign_id": None},
                              "channels": [], "scheduled_at": None, "idempotency_key": None, "locale": None,
                              "template_id": None, "template_vars": {}},
    "DeliveryJob": {"job_id": "n-1:alice:push:0", "notification_id": "n-1", "revision": 0, "request_ids": ["r-1"],
                    "user_id": "alice", "tenant": "default", "channel": "push", "lane": "normal", "kind": "single",
                    "priority": "normal", "type": "info", "category": "ci", "title": "Build failed",
                    "body": "main is red", "html_body": "main is red", "image_url": None, "icon": None, "badge": None,
                    "actions": [], "deep_link": None, "payload": {}, "locale": "en", "template_id": None,
                    "variant": None, "campaign_id": None, "merge": None,
                    "devices": [{"device_id": "p1", "platform": "android", "token": "tok", "web_push": None}],
                    "address": None, "fallback": [{"channel": "email", "after_seconds": 300, "address": "a@b.c"}],
                    "digest_items": [], "collapse_key": "n-1", "created_at": NOW, "expires_at": None},
}


def schema_name(path: Path) -> str:
    return path.name.split(".")[0]


def written_with(schema: dict, record: dict) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, schema, record)
    return out.getvalue()


def old_record(path: Path) -> dict:
    return OLD_RECORDS[schema_name(path)]


@pytest.mark.parametrize("path", HISTORY, ids=lambda p: p.name)
def test_a_record_of_an_earlier_version_decodes_into_todays_shape(path):
    old = fastavro.parse_schema(json.loads(path.read_text()))
    record = old_record(path)
    decoded = AvroCodec(schema_name(path)).decode(written_with(old, record))
    added = [f for f in load_schema(schema_name(path))["fields"] if f["name"] not in record]
    assert {k: v for k, v in decoded.items() if k in record} == record
    assert {f["name"]: decoded[f["name"]] for f in added} == {f["name"]: f["default"] for f in added}


@pytest.mark.parametrize("path", HISTORY, ids=lambda p: p.name)
def test_an_earlier_version_registered_in_a_schema_registry_decodes_too(path):
    registry = SchemaRegistryClient.new_client({"url": "mock://"})
    topic = f"history-{path.name}"
    old_id = registry.register_schema(f"{topic}-value", Schema(path.read_text(), "AVRO"))
    framed = b"\x00" + old_id.to_bytes(4, "big") + written_with(fastavro.parse_schema(json.loads(path.read_text())),
                                                                 old_record(path))
    decoded = AvroCodec(schema_name(path), registry=registry, topic=topic).decode(framed)
    assert {k: v for k, v in decoded.items() if k in old_record(path)} == old_record(path)


@pytest.mark.parametrize("path", HISTORY, ids=lambda p: p.name)
def test_versions_only_add_fields_with_defaults_at_the_end_and_enum_symbols_at_the_end(path):
    old, new = json.loads(path.read_text()), json.loads((path.parent.parent / f"{schema_name(path)}.avsc").read_text())
    assert [f["name"] for f in new["fields"][:len(old["fields"])]] == [f["name"] for f in old["fields"]]
    assert all("default" in f for f in new["fields"][len(old["fields"]):])
    for before, after in zip(old["fields"], new["fields"]):
        assert same_but_appended_symbols(before["type"], after["type"]), before["name"]


def same_but_appended_symbols(before, after) -> bool:
    if isinstance(before, dict) and isinstance(after, dict) and before.get("type") == after.get("type") == "enum":
        return after["symbols"][:len(before["symbols"])] == before["symbols"]
    if isinstance(before, list) and isinstance(after, list):
        return len(before) == len(after) and all(map(same_but_appended_symbols, before, after))
    if isinstance(before, dict) and isinstance(after, dict):
        return before.keys() == after.keys() and all(same_but_appended_symbols(before[k], after[k]) for k in before)
    return before == after


def test_todays_records_are_not_mistaken_for_an_earlier_version():
    today = {**OLD_RECORDS["PreferencesUpdated"], "tenant": "acme",
             "presentation": {"sound": False, "vibration": True, "auto_dismiss": False, "duration_seconds": 10}}
    data = AvroCodec("PreferencesUpdated").encode(today)
    assert AvroCodec("PreferencesUpdated").decode(data) == today
    for older in history("PreferencesUpdated"):
        body = io.BytesIO(data)
        fastavro.schemaless_reader(body, older)
        assert body.tell() < len(data)  # read as an earlier version, today's record leaves bytes over


def test_bytes_that_fit_no_version_are_still_refused():
    with pytest.raises(CodecError, match="truncated"):
        AvroCodec("PreferencesUpdated").decode(AvroCodec("PreferencesUpdated").encode(OLD_RECORDS["PreferencesUpdated"]
                                                                                      | {"presentation": None,
                                                                                         "tenant": "acme"})[:9])
