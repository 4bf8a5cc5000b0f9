"""flows/user_state.py (the user-state join) and flows/dedup.py (dedup and merge)."""

from datetime import timedelta

import pytest

from flow_items import (NOW, Pipeline, device, preferences_record, presence, request, user_state_item,
                        web_push_subscription)
from flows import dedup
from flows.dedup import DedupMerge, content_hash
from schemas.writer import millis
from flows.user_state import PRESENCE_TTL, JoinUserState, apply_update, default_preferences, view

# --- user state -------------------------------------------------------------------------------


def joined(*updates, user_id="alice"):
    """(step, state) after the given (topic, record) updates went through intake and the join."""
    step = JoinUserState()
    state = step.new_state()
    assert step.process(state, [user_state_item(topic, record) for topic, record in updates], NOW) == []
    return step, state


def test_default_preferences():
    assert default_preferences("alice") == {
        "user_id": "alice", "enabled": True, "quiet_hours": None, "digest": None, "channels": {},
        "categories": {}, "marketing_consent": False, "email": None, "phone": None, "locale": None,
        "timezone": "UTC", "deleted": False, "presentation": None, "tenant": "default"}
    assert default_preferences("alice", "acme")["tenant"] == "acme"


def test_view_of_an_unknown_user_is_the_defaults():
    step = JoinUserState()
    state = step.new_state()
    assert state == {"preferences": None, "devices": {}, "online": {}}
    assert view(state, "alice", NOW) == {"preferences": default_preferences("alice"), "devices": [], "online": False}
    assert step.is_empty(state)


def test_preferences_are_the_whole_latest_record():
    first = preferences_record("alice", email="alice@example.com", locale="fr")
    second = preferences_record("alice", enabled=False)
    _, state = joined(("notify.preferences", first), ("notify.preferences", second))
    assert view(state, "alice", NOW)["preferences"] == second
    assert view(state, "alice", NOW)["preferences"]["email"] is None  # not a diff: the email is gone


def test_devices_are_registered_updated_and_deactivated():
    phone = device("alice", "phone-1", token="t1")
    laptop = device("alice", "laptop-1", platform="web", token=None, web_push=web_push_subscription())
    phone_again = device("alice", "phone-1", token="t2")
    step, state = joined(("notify.devices", phone), ("notify.devices", laptop), ("notify.devices", phone_again))
    assert view(state, "alice", NOW)["devices"] == [phone_again, laptop]
    assert not step.is_empty(state)

    step.process(state, [user_state_item("notify.devices", device("alice", "phone-1", active=False))], NOW)
    assert view(state, "alice", NOW)["devices"] == [laptop]
    # Deactivating a device nobody knows is harmless.
    step.process(state, [user_state_item("notify.devices", device("alice", "tablet-9", active=False))], NOW)
    assert view(state, "alice", NOW)["devices"] == [laptop]


def test_presence_online_away_offline():
    step, state = joined(("notify.presence", presence("alice", "phone-1", "online")),
                         ("notify.presence", presence("alice", "laptop-1", "online")))
    assert view(state, "alice", NOW)["online"] is True
    assert state["online"] == {"phone-1": NOW, "laptop-1": NOW}
    step.process(state, [user_state_item("notify.presence", presence("alice", "phone-1", "offline"))], NOW)
    assert view(state, "alice", NOW)["online"] is True  # the laptop is still connected
    step.process(state, [user_state_item("notify.presence", presence("alice", "laptop-1", "away"))], NOW)
    assert view(state, "alice", NOW)["online"] is False
    assert step.is_empty(state)


def test_presence_no_gateway_repeats_expires():
    step, state = joined(("notify.presence", presence("alice", "phone-1", "online")))
    assert view(state, "alice", NOW + PRESENCE_TTL - timedelta(seconds=1))["online"] is True
    assert view(state, "alice", NOW + PRESENCE_TTL)["online"] is False  # its gateway died: no "offline" came
    refreshed = NOW + timedelta(seconds=60)
    step.process(state, [user_state_item("notify.presence", presence("alice", "phone-1", "online", at=refreshed))], NOW)
    assert view(state, "alice", NOW + PRESENCE_TTL)["online"] is True
    # Devices not heard of are forgotten as others report, so the state does not keep them forever.
    later = refreshed + PRESENCE_TTL
    step.process(state, [user_state_item("notify.presence", presence("alice", "laptop-1", "offline", at=later))], NOW)
    assert state["online"] == {} and step.is_empty(state)


def test_deactivating_a_device_ends_its_presence():
    step, state = joined(("notify.devices", device("alice", "phone-1")),
                         ("notify.presence", presence("alice", "phone-1", "online")))
    assert view(state, "alice", NOW)["online"] is True
    step.process(state, [user_state_item("notify.devices", device("alice", "phone-1", active=False))], NOW)
    assert view(state, "alice", NOW) == {"preferences": default_preferences("alice"), "devices": [], "online": False}


def test_erasure_tombstone_wipes_everything():
    step, state = joined(("notify.preferences", preferences_record("alice", email="alice@example.com",
                                                                   phone="+351900000000")),
                         ("notify.devices", device("alice", "phone-1")),
                         ("notify.presence", presence("alice", "phone-1", "online")))
    assert not step.is_empty(state)
    step.process(state, [user_state_item("notify.preferences", preferences_record("alice", deleted=True))], NOW)
    assert state == {"preferences": None, "devices": {}, "online": {}}
    assert view(state, "alice", NOW) == {"preferences": default_preferences("alice"), "devices": [], "online": False}
    assert step.is_empty(state)


def test_apply_update_directly():
    state = JoinUserState().new_state()
    apply_update(state, "notify.presence", presence("alice", "web-1", "online"))
    assert state["online"] == {"web-1": NOW}
    apply_update(state, "notify.preferences", preferences_record("alice", marketing_consent=True))
    assert state["preferences"]["marketing_consent"] is True


def test_notifications_leave_with_a_snapshot_of_the_state_so_far():
    pipeline = Pipeline(until="join_user_state")
    pipeline.user("alice", devices=[device("alice", "phone-1")], online=True, email="alice@example.com")
    first = pipeline.run(request("alice", title="first"))[0]
    assert first["user"] == {"preferences": preferences_record("alice", email="alice@example.com"),
                             "devices": [device("alice", "phone-1")], "online": True}
    pipeline.user("alice", devices=[device("alice", "phone-1", active=False)], email="new@example.com")
    second = pipeline.run(request("alice", title="second"))[0]
    assert second["user"]["devices"] == [] and second["user"]["online"] is False
    assert second["user"]["preferences"]["email"] == "new@example.com"
    # The first item's snapshot did not change under it.
    assert first["user"]["devices"] == [device("alice", "phone-1")]
    assert first["user"]["preferences"]["email"] == "alice@example.com"


def test_updates_and_notifications_apply_in_arrival_order_within_a_batch():
    step = JoinUserState()
    state = step.new_state()
    note = Pipeline(until="expand_audience").run(request("alice"))[0]
    out = step.process(state, [note, user_state_item("notify.preferences", preferences_record("alice", locale="de")),
                               note], NOW)
    assert [item["user"]["preferences"]["locale"] for item in out] == [None, "de"]


def test_finished_items_pass_the_join_untouched():
    step = JoinUserState()
    state = step.new_state()
    expired = Pipeline(until="decode_and_validate").run(
        request(metadata={"created_at": NOW - timedelta(hours=1), "expires_at": NOW - timedelta(minutes=1)}))[0]
    assert step.process(state, [expired], NOW) == [expired]
    assert "user" not in expired


# --- dedup and merge ---------------------------------------------------------------------------


def at(minutes: float = 0, **fields):
    """A request created `minutes` after NOW."""
    metadata = {"created_at": NOW + timedelta(minutes=minutes), **fields.pop("metadata", {})}
    return request(metadata=metadata, **fields)


def deduped(*requests, now=None):
    """Each request through the pipeline up to dedup_merge, one batch at a time, for one user."""
    pipeline = Pipeline(until="dedup_merge")
    out = []
    for req in requests:
        # The flow validates against the wall clock; let every request be valid when it arrives.
        out += pipeline.run(req, now=now or req["metadata"]["created_at"])
    return out


def test_a_new_notification_gets_its_request_id():
    req = at(0)
    (item,) = deduped(req)
    assert (item["notification_id"], item["revision"], item["merge"]) == (req["id"], 0, None)
    assert item["request"]["content"] == req["content"]


def test_count_strategy_merges_into_n_new_messages():
    first, second, third = (at(m, title="Bob sent you a message", body="Ping", category="messages")
                            for m in (0, 1, 4.9))
    out = deduped(first, second, third)
    assert [(i["notification_id"], i["revision"]) for i in out] == [(first["id"], 0), (first["id"], 1),
                                                                    (first["id"], 2)]
    assert [i["request"]["content"]["body"] for i in out] == ["Ping", "2 new messages", "3 new messages"]
    assert [i["request"]["content"]["title"] for i in out] == ["Bob sent you a message"] * 3
    assert out[1]["merge"] == {"strategy": "count", "count": 2, "items": ["Ping", "Ping"]}
    assert out[2]["merge"] == {"strategy": "count", "count": 3, "items": ["Ping", "Ping", "Ping"]}
    # The merge still carries its own request (its id ends up in the job's request_ids).
    assert [i["request"]["id"] for i in out] == [first["id"], second["id"], third["id"]]


def test_count_strategy_uses_the_category_name():
    out = deduped(at(0), at(1))  # category general: the default policy counts
    assert out[1]["request"]["content"]["body"] == "2 new general"


def test_replace_strategy_keeps_the_latest_content():
    first = at(0, title="Build #7", body="running", category="ci",
               content={"image_url": "https://ci.example.com/badge/1.png"})
    latest = at(2, title="Build #7", body="running", category="ci",
                content={"image_url": "https://ci.example.com/badge/2.png",
                         "actions": [{"id": "logs", "title": "Logs", "action": "https://ci.example.com/7",
                                      "icon": None}]})
    out = deduped(first, latest)
    assert out[1]["request"]["content"] == latest["content"]
    assert (out[1]["notification_id"], out[1]["revision"]) == (first["id"], 1)
    assert out[1]["merge"] == {"strategy": "replace", "count": 2, "items": ["running", "running"]}


def test_accumulate_strategy_joins_the_bodies():
    out = deduped(*(at(m, title="Ana liked your photo", body="", category="social") for m in (0, 1, 2)))
    # An empty body is summarised by its title.
    assert out[2]["request"]["content"]["body"] == "Ana liked your photo\nAna liked your photo\nAna liked your photo"
    assert out[2]["merge"] == {"strategy": "accumulate", "count": 3, "items": ["Ana liked your photo"] * 3}


def test_merge_keeps_at_most_ten_items():
    out = deduped(*(at(m / 10, category="social") for m in range(12)))
    assert out[-1]["merge"]["count"] == 12 and len(out[-1]["merge"]["items"]) == dedup.MAX_ITEMS
    assert out[-1]["revision"] == 11


def test_window_is_five_minutes_by_created_at_from_the_first():
    first, inside, after = at(0, category="messages"), at(4.99, category="messages"), at(5, category="messages")
    out = deduped(first, inside, after)
    assert [(i["notification_id"], i["revision"]) for i in out] == [(first["id"], 0), (first["id"], 1),
                                                                    (after["id"], 0)]
    assert out[2]["request"]["content"]["body"] == "main is green" and out[2]["merge"] is None


def test_the_window_does_not_slide_with_each_merge():
    reqs = [at(m, category="messages") for m in (0, 3, 6, 7)]
    out = deduped(*reqs)
    assert [(i["notification_id"], i["revision"]) for i in out] == [
        (reqs[0]["id"], 0), (reqs[0]["id"], 1), (reqs[2]["id"], 0), (reqs[2]["id"], 1)]


def test_windows_run_on_created_at_not_the_wall_clock():
    reqs = [at(m, category="messages") for m in (0, 1, 2)]
    # Arriving hours late (a replay) decides the same as arriving on time.
    late = deduped(*reqs, now=NOW + timedelta(hours=3))
    on_time = deduped(*reqs)
    strip = lambda items: [(i["notification_id"], i["revision"], i["merge"]) for i in items]  # noqa: E731
    assert strip(late) == strip(on_time)
    assert [i["revision"] for i in late] == [0, 1, 2]


def test_different_content_is_not_merged():
    a, b, c = at(0, body="one"), at(1, body="two"), at(2, body="one", type="warning")
    out = deduped(a, b, c)
    assert [(i["notification_id"], i["revision"]) for i in out] == [(a["id"], 0), (b["id"], 0), (c["id"], 0)]


def test_idempotency_key_changes_the_hash():
    assert content_hash(at(0, idempotency_key="k1")) != content_hash(at(0, idempotency_key="k2"))
    assert content_hash(at(0, idempotency_key="k1")) != content_hash(at(0))
    a, b, c = at(0, idempotency_key="k1"), at(1, idempotency_key="k2"), at(2, idempotency_key="k1")
    out = deduped(a, b, c)
    assert [(i["notification_id"], i["revision"]) for i in out] == [(a["id"], 0), (b["id"], 0), (a["id"], 1)]


def test_hash_covers_title_body_and_type_only_from_content():
    base = at(0)
    assert content_hash(base) == content_hash(at(3, category="billing", priority="high",
                                                 content={"image_url": "https://x.example.com/a.png"}))
    assert content_hash(base) != content_hash(at(0, title="other"))
    assert len(content_hash(base)) == 32


def test_templated_requests_with_different_templates_or_vars_are_not_merged():
    welcome = at(0, title="", body="", template_id="welcome", template_vars={"name": "Ana", "product": "Acme"})
    again = at(1, title="", body="", template_id="welcome", template_vars={"product": "Acme", "name": "Ana"})
    other_vars = at(2, title="", body="", template_id="welcome", template_vars={"name": "Bo", "product": "Acme"})
    other_template = at(3, title="", body="", template_id="weekly_digest_promo",
                        template_vars={"name": "Ana", "product": "Acme"})
    assert content_hash(welcome) == content_hash(again)
    assert len({content_hash(r) for r in (welcome, other_vars, other_template)}) == 3
    out = deduped(welcome, again, other_vars, other_template)
    assert [(i["notification_id"], i["revision"]) for i in out] == [
        (welcome["id"], 0), (welcome["id"], 1), (other_vars["id"], 0), (other_template["id"], 0)]


def test_the_same_request_id_again_is_deduplicated():
    req = at(0, category="messages")
    pipeline = Pipeline(until="dedup_merge")
    first = pipeline.run(req)
    again = pipeline.run(req, now=NOW + timedelta(hours=1))
    assert first[0]["revision"] == 0
    assert len(again) == 1
    assert again[0]["outcome"] == "deduplicated"
    assert again[0]["reason"] == f"request {req['id']} was already processed"
    # A redelivered request does not count as another merge either.
    assert pipeline.state("dedup_merge")["windows"][content_hash(req)]["count"] == 1


def test_request_ids_are_remembered_for_24_hours_of_created_at():
    old = at(0, body="old")
    pipeline = Pipeline(until="dedup_merge")
    pipeline.run(old)
    pipeline.run(at(24 * 60 - 1, body="newer"), now=NOW + timedelta(hours=24))
    assert pipeline.run(old, now=NOW + timedelta(minutes=1))[0]["outcome"] == "deduplicated"
    pipeline.run(at(24 * 60, body="newest"), now=NOW + timedelta(hours=24))
    replayed = pipeline.run(old, now=NOW + timedelta(minutes=1))
    assert "outcome" not in replayed[0] and replayed[0]["revision"] == 0


def test_users_have_their_own_windows():
    pipeline = Pipeline(until="dedup_merge")
    a1, b1, a2 = at(0, user_id="ana"), at(0, user_id="bob"), at(1, user_id="ana")
    out = pipeline.run(a1, b1, a2)
    assert [(i["user_id"], i["notification_id"], i["revision"]) for i in out] == [
        ("ana", a1["id"], 0), ("ana", a1["id"], 1), ("bob", b1["id"], 0)]


def test_state_forgets_old_windows_and_can_be_discarded():
    step = DedupMerge()
    state = step.new_state()
    assert step.is_empty(state)
    items = Pipeline(until="join_user_state").run(at(0))
    step.process(state, items, NOW)
    assert not step.is_empty(state)
    later = Pipeline(until="join_user_state").run(at(25 * 60, body="much later"), now=NOW + timedelta(hours=25))
    step.process(state, later, NOW + timedelta(hours=25))
    assert list(state["request_ids"]) == [later[0]["request"]["id"]]
    assert len(state["windows"]) == 1


def test_a_state_snapshotted_with_datetimes_is_resumed():
    # States pickled before dedup held epoch milliseconds hold datetimes; a resumed flow goes on with them.
    first = at(0)
    step, items = DedupMerge(), Pipeline(until="join_user_state").run(first)
    legacy = {"clock": NOW, "request_ids": {first["id"]: NOW},
              "windows": {content_hash(first): {"notification_id": first["id"], "first_at": NOW, "count": 1,
                                                "items": ["main is green"]}}}
    assert step.process(legacy, items, NOW)[0]["outcome"] == "deduplicated"
    (merge,) = step.process(legacy, Pipeline(until="join_user_state").run(at(1)), NOW)
    assert (merge["notification_id"], merge["revision"]) == (first["id"], 1)
    assert legacy["clock"] == legacy["request_ids"][first["id"]] + 60_000 == millis(NOW + timedelta(minutes=1))


@pytest.mark.parametrize("outcome_request", [
    at(-60, metadata={"expires_at": NOW - timedelta(minutes=1)}),
])
def test_finished_items_pass_dedup_untouched(outcome_request):
    step = DedupMerge()
    state = step.new_state()
    expired = Pipeline(until="decode_and_validate").run(outcome_request)
    assert expired[0]["outcome"] == "expired"
    assert step.process(state, expired, NOW) == expired
    assert step.is_empty(state)
