"""notifyflow/userdata.py (finding a user's claims, the erasure tombstones) and notifyflow/dlq.py
(selecting dead letters to replay), without servers."""

from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase

import pytest

from kernel.topics import codec_for
from notifyflow.dlq import Selection, SelectionError, replayable, select
from notifyflow.userdata import addresses, claim_pattern, is_claim_of, tombstones
from sinks.engine import Send

NOW = datetime(2026, 11, 26, 4, 0, tzinfo=UTC)

# --- a user's Redis claims -------------------------------------------------------------------


def test_the_scan_pattern_escapes_glob_characters_of_the_user_id():
    assert claim_pattern("ana") == "claim:*:ana:*"
    assert claim_pattern("a*b?[c]\\d") == "claim:*:a\\*b\\?\\[c\\]\\\\d:*"


@pytest.mark.parametrize("key, mine", [
    ("claim:n1:ana:push:phone-1:0", True),
    ("claim:digest:ana:20261126T0900:ana:email:-:0", True),
    ("claim:n1:ana:in_app:-:3", True),
    ("claim:n1:ana:push:dev:with:colons:0", True),
    ("claim:n1:ana-2:push:phone-1:0", False),  # another user whose id starts like hers
    ("claim:n1:xana:push:phone-1:0", False),
    ("claim:digest:ana:20261126T0900:bob:email:-:0", False),  # bob's digest id names no one else
    ("claim:n1:ana:carrier-pigeon:p:0", False),
])
def test_a_found_key_is_the_users_own_claim_only_when_the_user_is_its_user_field(key, mine):
    assert is_claim_of(key, "ana") is mine


def test_the_claim_keys_the_sinks_make_are_found_as_the_users():
    job = {"notification_id": "digest:ana:20261126T0900", "user_id": "ana", "channel": "email", "revision": 2,
           "tenant": "default"}
    for device in (None, {"device_id": "phone:1"}):
        key = Send(job, device).claim_key
        assert is_claim_of(key, "ana") and not is_claim_of(key, "an")
        assert fnmatchcase(key, claim_pattern("ana"))


def test_a_tenants_user_is_found_in_their_claims_only():
    """Two tenants' `ana`: each one's claims are hers, never the other's (nor a notification id's)."""
    acme = Send({"notification_id": "n1", "user_id": "ana", "channel": "push", "revision": 0, "tenant": "acme"},
                {"device_id": "p1"}).claim_key
    default = Send({"notification_id": "acme:n1", "user_id": "ana", "channel": "push", "revision": 0,
                    "tenant": "default"}, {"device_id": "p1"}).claim_key
    assert is_claim_of(acme, "ana", "acme") and fnmatchcase(acme, claim_pattern("ana", "acme"))
    assert not is_claim_of(acme, "ana") and not fnmatchcase(acme, claim_pattern("ana"))
    assert is_claim_of(default, "ana") and not is_claim_of(default, "ana", "acme")
    assert not fnmatchcase(default, claim_pattern("ana", "acme"))


# --- erasure tombstones ----------------------------------------------------------------------


def test_tombstones_retire_every_known_device_and_connection_and_erase_the_preferences():
    data = {"postgres": {"devices": [{"device_id": "phone-1", "platform": "android"}]},
            "kafka": {"notify.devices": [{"device_id": "phone-1", "platform": "android"},
                                         {"device_id": "laptop", "platform": "web"}],
                      "notify.presence": [{"device_id": "laptop"}]}, "tenant": "acme"}
    out = tombstones("ana", data, NOW)
    assert {record["tenant"] for _, record in out} == {"acme"}  # acme's ana's, keyed as hers
    assert [(topic, record.get("device_id")) for topic, record in out] == [
        ("notify.devices", "laptop"), ("notify.devices", "phone-1"), ("notify.presence", "laptop"),
        ("notify.preferences", None)]
    for topic, record in out:
        codec_for(topic).encode(record)  # valid records of their topic
    devices = [record for topic, record in out if topic == "notify.devices"]
    assert all(not d["active"] and d["token"] is None and d["web_push"] is None for d in devices)
    preferences = out[-1][1]
    assert preferences["deleted"] and preferences["email"] is None and not preferences["marketing_consent"]


def test_email_addresses_are_compared_lower_cased_like_the_suppressions():
    assert addresses([{"email": "Ana@Example.com"}, {"email": None}, {"email": "ana@example.com"}]) == [
        "ana@example.com"]


# --- dead-letter selection -------------------------------------------------------------------


def letter(offset: int, stage: str = "validate", reason: str = "content.title is empty",
           topic: str = "notify.events", seen: datetime = NOW) -> dict:
    return {"topic": topic, "partition": 0, "offset": offset, "stage": stage, "reason": reason, "last_seen": seen}


LETTERS = [letter(1), letter(2, stage="decode", reason="not Avro"), letter(1),  # offset 1 dead-lettered twice
           letter(3, reason="metadata.created_at 2026-11-26T05:00:00+00:00 is in the future",
                  seen=NOW + timedelta(hours=1)),
           letter(7, stage="deliver", reason="provider said 503", topic="notify.outbox.push.normal")]


def offsets(selection: Selection) -> list[int]:
    return [chosen["offset"] for chosen in select(LETTERS, selection)]


def test_select_by_stage_reason_topic_and_time_one_per_source_record():
    assert offsets(Selection(stage="validate")) == [1, 3]
    assert offsets(Selection(reason="in the future")) == [3]
    assert offsets(Selection(stage="validate", reason="title")) == [1]
    assert offsets(Selection(reason="", topic="notify.outbox.push.normal")) == [7]
    assert offsets(Selection(stage="validate", since=NOW + timedelta(minutes=1))) == [3]
    assert offsets(Selection(stage="validate", until=NOW + timedelta(minutes=1))) == [1]


@pytest.mark.parametrize("fields, message", [
    ({}, "choose dead letters by --stage and/or --reason"),
    ({"topic": "notify.events"}, "choose dead letters"),
    ({"stage": "validate", "since": NOW, "until": NOW}, "is not before --until"),
])
def test_unusable_selections_are_refused(fields, message):
    with pytest.raises(SelectionError, match=message):
        Selection(**fields)


def test_an_unknown_topic_is_refused_with_the_known_ones():
    with pytest.raises(KeyError, match="unknown topic 'notify.nope'; known topics: notify.events"):
        Selection(stage="validate", topic="notify.nope")


def test_a_stage_no_dead_letter_has_is_a_mistake():
    Selection(stage="decode").check_stage(LETTERS)
    with pytest.raises(SelectionError, match="no dead letters at stage 'validation'; stages: decode, deliver, validate"):
        Selection(stage="validation").check_stage(LETTERS)


def test_only_records_of_topics_kept_by_time_are_replayable():
    assert replayable(letter(1)) and replayable(letter(2, topic="notify.outbox.email.bulk"))
    # A replayed preferences record would become the user's latest state, even over an erasure.
    assert not replayable(letter(3, topic="notify.preferences"))
    assert not replayable(letter(4, topic="notify.devices"))
    assert not replayable(letter(5, topic="somewhere.else"))
