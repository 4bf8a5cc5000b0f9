"""The notification flow's per-user pipeline (kernel/keyed.py KeyedPipeline, wired as
flows/notifications.py wires it) across its steps: an erasure tombstone drops all of a user's state,
so nothing held back is released later and no window of the erased user decides anything after it;
a dead letter leaves nothing behind, so its replay after a fix is processed as new."""

import functools
from datetime import timedelta

from flows.notifications import per_user_steps
from flows.render import render
from flows.templates import TemplateCatalog
from kernel.keyed import Each, KeyedPipeline, finished

from flow_items import (NOW, TEMPLATES, Pipeline, device, digest_settings, preferences_record, request, sample_catalog,
                        user_records, user_state_item)

TOMBSTONE = user_state_item("notify.preferences", preferences_record("alice", deleted=True))


def pipeline() -> KeyedPipeline:
    return per_user_steps(sample_catalog())


def index_of(steps: KeyedPipeline, name: str) -> int:
    return [step_name for step_name, _ in steps.steps].index(name)


def keyed(*requests) -> list[dict]:
    """Requests as they reach the per-user steps (decoded, validated, one per user)."""
    return [item for req in requests for item in Pipeline(until="expand_audience").run(req)]


def user(**prefs) -> list[dict]:
    return [user_state_item(topic, record) for topic, record in user_records("alice", devices=[device()], **prefs)]


def test_a_tombstone_drops_what_every_step_holds_and_the_timers_with_it():
    steps = pipeline()
    state = steps.new_state()
    steps.process(state, user(digest=digest_settings(), marketing_consent=True), NOW)
    out = steps.process(state, keyed(
        request(title="sent now", priority="high"),  # counted by the rate limit
        request(title="later", scheduled_at=NOW + timedelta(hours=1)),  # held until scheduled_at
        request(title="for the digest", priority="low", category="social")), NOW)
    assert [item.get("outcome") for item in out] == [None, "deferred", "digested"]
    assert state["quiet_hours"]["held"] and state["digest"][""]["entries"] and state["rate_limit"]["sent"]
    assert len(state["dedup_merge"]["windows"]) == 3 and state["join_user_state"]["devices"]
    assert steps.due(state) == NOW + timedelta(hours=1)

    assert steps.process(state, [TOMBSTONE], NOW) == []
    assert state == steps.new_state()
    assert steps.is_empty(state)  # the flow discards the user's state entirely
    assert steps.due(state) is None
    assert steps.release(state, NOW + timedelta(days=8)) == []


def test_after_erasure_no_dedup_memory_and_no_stored_consent():
    steps = pipeline()
    state = steps.new_state()
    steps.process(state, user(marketing_consent=True), NOW)
    ping = request(title="ping", body="same")
    first = steps.process(state, keyed(ping), NOW)
    assert "outcome" not in first[0]
    steps.process(state, [TOMBSTONE], NOW)
    # The same request again is not "already processed": the memory of it went with the user.
    again = steps.process(state, keyed(ping), NOW)
    assert "outcome" not in again[0] and again[0]["revision"] == 0
    # Consent was erased with the rest: marketing is not sent.
    [sale] = steps.process(state, keyed(request(title="sale", category="marketing", type="marketing",
                                                priority="low")), NOW)
    assert sale["outcome"] == "dropped" and "consent" in sale["reason"]


def test_a_tombstone_applies_at_its_place_in_a_batch():
    steps = pipeline()
    state = steps.new_state()
    before, after = keyed(request(title="before", priority="high")), keyed(request(title="after", priority="high"))
    out = steps.process(state, [*user(email="alice@example.com"), *before, TOMBSTONE, *after], NOW)
    assert [item["request"]["content"]["title"] for item in out] == ["before", "after"]
    # Decided with the state of their moment: the address was known before the tombstone, not after.
    assert [item["user"]["preferences"]["email"] for item in out] == ["alice@example.com", None]
    assert state["dedup_merge"]["request_ids"].keys() == {after[0]["request"]["id"]}


def test_a_dead_letter_leaves_no_dedup_memory_so_its_replay_after_a_fix_is_new():
    steps = pipeline()
    state = steps.new_state()
    broken = request(title="", template_id="welcome-v2", template_vars={"name": "Ana", "product": "Acme"})
    [dead] = steps.process(state, keyed(broken), NOW)
    assert (dead["outcome"], dead["stage"]) == ("dead_letter", "render")
    assert steps.is_empty(state)

    # The template is deployed; the same bytes are replayed: rendered, not "already processed".
    steps.steps[index_of(steps, "render_template")] = ("render_template", Each(functools.partial(
        render, TemplateCatalog({**TEMPLATES, "welcome-v2": TEMPLATES["welcome"]}))))
    [replayed] = steps.process(state, keyed(broken), NOW + timedelta(minutes=1))
    assert "outcome" not in replayed and replayed["revision"] == 0
    assert replayed["rendered"]["title"] == "Welcome to Acme, Ana!"


def test_a_dead_update_of_a_merged_notification_keeps_the_window_the_user_has():
    steps = pipeline()
    state = steps.new_state()
    first = steps.process(state, keyed(request(title="Ping", body="same")), NOW)
    assert "outcome" not in first[0]
    update = first[0]
    steps.steps[index_of(steps, "render_template")] = ("render_template", Each(
        lambda item: finished(item, "dead_letter", "broken", stage="render")))
    [dead] = steps.process(state, keyed(request(title="Ping", body="same")), NOW)
    assert dead["revision"] == 1
    assert [w["notification_id"] for w in state["dedup_merge"]["windows"].values()] == [update["notification_id"]]
    assert list(state["dedup_merge"]["request_ids"]) == [update["request"]["id"]]
