"""The delivery engine's decisions, with a scripted provider standing in for the network
(integration tests run the same engine against real protocol peers)."""

from __future__ import annotations

import copy
import random
from datetime import UTC, datetime, timedelta

from kernel.topics import codec_for, outbox_topic
from sinks.circuit import Breakers
from sinks.engine import Delivery, Result, Send
from sinks.retry import RetryPolicy

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


class ScriptedProvider:
    """Answers each send with the next scripted result for its device (or "-"), else sent."""

    name, batch_size = "scripted", 2

    def __init__(self, script: dict[str, list[Result]] | None = None) -> None:
        self.script, self.calls = script or {}, []

    def targets(self, job):
        return [d for d in job["devices"] if d["token"]] if job["channel"] == "push" else [None]

    async def send(self, sends: list[Send]) -> list[Result]:
        self.calls.append([(s.job["user_id"], s.device and s.device["device_id"], s.attempt) for s in sends])
        return [self.next_result(send) for send in sends]

    def next_result(self, send: Send) -> Result:
        queue = self.script.get(send.device["device_id"] if send.device else "-")
        return queue.pop(0) if queue else Result("sent")


class MemoryClaims:
    """RedisClaims' answers over a dict; share `held` between two of them to play a restart."""

    def __init__(self, held: dict | None = None, owner: str = "first") -> None:
        self.held, self.owner = {} if held is None else held, owner

    def claim(self, keys):
        answers = []
        for key in keys:
            previous = self.held.get(key)
            answers.append({None: "fresh", self.owner: "in_flight", "sent": "sent"}.get(previous, "resumed"))
            if previous not in (self.owner, "sent"):
                self.held[key] = self.owner
        return answers

    def confirm(self, keys):
        self.held.update(dict.fromkeys(keys, "sent"))

    def release(self, keys):
        for key in keys:
            self.held.pop(key, None)


def job(user="ana", channel="push", devices=None, fallback=None, **fields) -> dict:
    """A complete DeliveryJob (the codec fills the defaults): dead letters carry its bytes."""
    codec = codec_for(outbox_topic(channel, "normal"))
    return codec.decode(codec.encode({
        "job_id": f"n1:{user}:{channel}:0", "notification_id": "n1", "revision": 0, "request_ids": ["n1"],
        "user_id": user, "tenant": "acme", "channel": channel, "lane": "normal", "kind": "single",
        "priority": "normal", "type": "info", "category": "ci", "title": "Build failed", "body": "main is red",
        "html_body": "main is red", "locale": "en", "collapse_key": "n1", "created_at": NOW,
        "devices": devices if devices is not None else [phone("p1")], "fallback": fallback or [], **fields}))


def phone(device_id: str, token: str = "tok") -> dict:
    return {"device_id": device_id, "platform": "android", "token": f"{token}-{device_id}", "web_push": None}


def engine(provider, **policy) -> Delivery:
    return Delivery(provider, MemoryClaims(), Breakers(failure_threshold=3),
                    RetryPolicy(jitter=0, **policy), random.Random(1))


def statuses(records):
    return [(r["status"], r["device_id"], r["attempt"], r["reason"]) for t, _, r in records if t == "notify.status"]


def test_one_send_per_device_in_batches_of_the_provider_size():
    provider = ScriptedProvider()
    delivery = engine(provider)
    out = delivery.process(delivery.new_state(), [job(devices=[phone("p1"), phone("p2"), phone("p3")])], NOW)
    assert statuses(out) == [("sent", "p1", 1, None), ("sent", "p2", 1, None), ("sent", "p3", 1, None)]
    assert provider.calls == [[("ana", "p1", 1), ("ana", "p2", 1)], [("ana", "p3", 1)]]


def test_transient_failures_wait_in_state_and_retry_with_backoff():
    provider = ScriptedProvider({"p1": [Result("transient", "503"), Result("transient", "503", retry_after=30)]})
    delivery = engine(provider, delays=(1, 2, 4))
    state = delivery.new_state()
    assert statuses(delivery.process(state, [job()], NOW)) == [("retried", "p1", 1, "503")]
    assert delivery.due(state) == NOW + timedelta(seconds=1)
    assert delivery.release(state, NOW + timedelta(seconds=0.5)) == []
    assert statuses(delivery.release(state, NOW + timedelta(seconds=1))) == [("retried", "p1", 2, "503")]
    # The provider's Retry-After (30 s) is longer than the backoff (2 s): it wins.
    assert delivery.due(state) == NOW + timedelta(seconds=31)
    assert statuses(delivery.release(state, NOW + timedelta(seconds=31))) == [("sent", "p1", 3, None)]
    assert delivery.is_empty(state)


def test_after_the_last_attempt_the_next_channel_takes_it():
    provider = ScriptedProvider({"-": [Result("transient", "timeout")] * 3})
    delivery = engine(provider, delays=(1, 1))
    state = delivery.new_state()
    chain = [{"channel": "email", "after_seconds": 300, "address": "ana@example.com"},
             {"channel": "sms", "after_seconds": 1800, "address": "+15550100"}]
    delivery.process(state, [job(channel="webhook", fallback=chain)], NOW)
    delivery.release(state, NOW + timedelta(seconds=1))
    out = delivery.release(state, NOW + timedelta(seconds=2))
    assert statuses(out) == [("failed", None, 3, "timeout")]
    assert not [r for r in out if r[0] == "notify.dlq"]  # not lost: the next channel has it
    [(topic, key, moved)] = [r for r in out if r[0].startswith("notify.outbox.")]
    assert (topic, key) == ("notify.outbox.email.normal", b"acme:ana")  # acme's ana, keyed as every record of hers
    assert (moved["channel"], moved["address"], moved["fallback"]) == ("email", "ana@example.com", chain[1:])
    assert moved["job_id"] == "n1:acme:ana:email:0"


def test_with_no_next_channel_it_is_dead_lettered_after_the_last_attempt_only():
    provider = ScriptedProvider({"-": [Result("transient", "timeout")] * 3})
    delivery = engine(provider, delays=(1, 1))
    state = delivery.new_state()
    first = delivery.process(state, [job(channel="webhook")], NOW)
    second = delivery.release(state, NOW + timedelta(seconds=1))
    assert not [r for r in first + second if r[0] == "notify.dlq"]
    out = delivery.release(state, NOW + timedelta(seconds=2))
    [(_, _, dead)] = [r for r in out if r[0] == "notify.dlq"]
    assert (dead["stage"], dead["reason"], dead["attempts"]) == ("deliver_webhook", "timeout", 3)


def test_an_open_circuit_holds_jobs_with_nowhere_else_to_go_without_spending_attempts():
    provider = ScriptedProvider({"-": [Result("transient", "503")] * 3})
    delivery = Delivery(provider, MemoryClaims(), Breakers(failure_threshold=3, open_s=30),
                        RetryPolicy(delays=(1,), jitter=0), random.Random(1))
    state = delivery.new_state()
    delivery.process(state, [job(user=u, channel="webhook") for u in ("a", "b", "c")], NOW)  # opens the circuit
    out = delivery.process(state, [job(user="d", channel="webhook")], NOW)
    assert statuses(out) == [("retried", None, 1, "circuit open for scripted: waiting")]
    out = delivery.release(state, NOW + timedelta(seconds=1))  # a, b, c are due; the circuit is still open
    assert [s[3] for s in statuses(out)] == ["circuit open for scripted: waiting"] * 3
    assert delivery.due(state) == NOW + timedelta(seconds=30)  # the circuit's trial, not a retry storm
    trial = delivery.release(state, NOW + timedelta(seconds=30))  # the provider is back: one trial call
    assert len(provider.calls[-1]) == 1 and [s[0] for s in statuses(trial)].count("sent") == 1
    assert delivery.due(state) == NOW + timedelta(seconds=30)  # the rest at once, now that it closed
    rest = delivery.release(state, NOW + timedelta(seconds=30))
    sent = sorted(s for s in statuses(trial + rest) if s[0] == "sent")
    assert sent == [("sent", None, 1, None)] + [("sent", None, 2, None)] * 3
    assert {s[3] for s in statuses(trial) if s[0] != "sent"} == {"circuit open for scripted: waiting"}
    assert not [r for r in trial + rest if r[0] == "notify.dlq"] and delivery.is_empty(state)


def test_a_provider_that_stays_down_dead_letters_held_jobs_once_the_trials_used_their_attempts():
    provider = ScriptedProvider({"-": [Result("transient", "503")] * 100})
    delivery = Delivery(provider, MemoryClaims(), Breakers(failure_threshold=1, open_s=30),
                        RetryPolicy(delays=(1, 1), jitter=0), random.Random(1))
    state = delivery.new_state()
    delivery.process(state, [job(user="a", channel="webhook")], NOW)  # fails: the circuit opens
    delivery.process(state, [job(user="b", channel="webhook")], NOW)  # held
    now, dead = NOW, []
    while len(dead) < 2 and now < NOW + timedelta(seconds=600):
        now = delivery.due(state)
        dead += [r[2] for r in delivery.release(state, now) if r[0] == "notify.dlq"]
    assert [(d["reason"], d["attempts"]) for d in dead] == [("503", 3), ("503", 3)]
    # One trial call per reopening of the circuit, each an attempt: a at 0, then a or b every 30 s.
    assert [len(call) for call in provider.calls] == [1] * 6
    assert (now - NOW).total_seconds() == 150 and delivery.is_empty(state)


def test_dead_tokens_are_forgotten_and_not_retried():
    provider = ScriptedProvider({"p1": [Result("permanent", "UNREGISTERED", state="token_invalid")]})
    delivery = engine(provider)
    out = delivery.process(delivery.new_state(), [job(devices=[phone("p1"), phone("p2")])], NOW)
    assert statuses(out) == [("token_invalid", "p1", 1, "UNREGISTERED"), ("sent", "p2", 1, None)]
    [(topic, key, tombstone)] = [r for r in out if r[0] == "notify.devices"]
    assert (topic, key, tombstone["device_id"], tombstone["active"], tombstone["tenant"]) == (
        "notify.devices", b"acme:ana", "p1", False, "acme")
    assert not [r for r in out if r[0] == "notify.dlq"]  # the token is gone, not the provider


def test_an_open_circuit_fails_fast_and_falls_back():
    provider = ScriptedProvider({"-": [Result("transient", "503")] * 3})
    delivery = engine(provider)
    state = delivery.new_state()
    chain = [{"channel": "email", "after_seconds": 300, "address": "x@example.com"}]
    delivery.process(state, [job(user=u, channel="webhook", fallback=chain) for u in ("a", "b", "c")], NOW)
    calls = len(provider.calls)
    out = delivery.process(state, [job(user="d", channel="webhook", fallback=chain)], NOW)
    assert len(provider.calls) == calls  # nothing sent while open
    assert statuses(out) == [("failed", None, 1, "circuit open for scripted")]
    assert [r[0] for r in out if r[0].startswith("notify.outbox.")] == ["notify.outbox.email.normal"]


def test_replays_send_nothing_twice():
    provider = ScriptedProvider()
    delivery = engine(provider)
    delivery.process(delivery.new_state(), [job()], NOW)
    out = delivery.process(delivery.new_state(), [job()], NOW)
    assert statuses(out) == [("deduplicated", "p1", 1, "already claimed")]
    assert len(provider.calls) == 1


def test_two_copies_of_a_job_reach_each_target_once():
    provider = ScriptedProvider({"p1": [Result("transient", "503")]})
    delivery = engine(provider)
    state = delivery.new_state()
    copies = [job(devices=[phone("p1"), phone("p2")])] * 2  # the notification flow replayed after a crash
    out = delivery.process(state, copies, NOW)
    assert sorted(statuses(out)) == [("deduplicated", "p1", 1, "already claimed"),
                                     ("deduplicated", "p2", 1, "already claimed"),
                                     ("retried", "p1", 1, "503"), ("sent", "p2", 1, None)]
    out = delivery.process(state, [job(devices=[phone("p1"), phone("p2")])], NOW)  # a third, while p1 waits
    assert statuses(out) == [("deduplicated", "p1", 1, "already claimed"), ("deduplicated", "p2", 1, "already claimed")]
    out = delivery.release(state, NOW + timedelta(seconds=2))
    assert statuses(out) == [("sent", "p1", 2, None)]
    assert [device for call in provider.calls for _, device, _ in call] == ["p1", "p2", "p1"]
    assert delivery.is_empty(state)


def test_a_send_in_flight_when_its_process_died_is_sent_again_with_the_same_key():
    held, first_calls, second_calls = {}, ScriptedProvider(), ScriptedProvider()
    first = Delivery(first_calls, MemoryClaims(held, "first"), Breakers(), RetryPolicy(jitter=0), random.Random(1))
    first.claims.claim([Send(job(), phone("p1")).claim_key])  # claimed, then SIGKILL before the provider answered
    second = Delivery(second_calls, MemoryClaims(held, "second"), Breakers(), RetryPolicy(jitter=0),
                      random.Random(1))
    out = second.process(second.new_state(), [job()], NOW)
    assert statuses(out) == [("sent", "p1", 1, None)] and not first_calls.calls
    assert second_calls.calls == [[("ana", "p1", 1)]]  # the same job, so the same idempotency key (job_id)
    assert second.process(second.new_state(), [job()], NOW)[0][2]["status"] == "deduplicated"


def test_a_retry_restored_from_a_snapshot_is_not_sent_if_it_was_sent_after_the_snapshot():
    held, provider = {}, ScriptedProvider({"p1": [Result("transient", "503")]})
    first = Delivery(provider, MemoryClaims(held, "first"), Breakers(), RetryPolicy(jitter=0), random.Random(1))
    state = first.new_state()
    first.process(state, [job()], NOW)
    snapshot = copy.deepcopy(state)
    assert statuses(first.release(state, NOW + timedelta(seconds=2))) == [("sent", "p1", 2, None)]
    # SIGKILL; the next process resumes from the snapshot, where the send still waits.
    second = Delivery(provider, MemoryClaims(held, "second"), Breakers(), RetryPolicy(jitter=0), random.Random(1))
    out = second.release(snapshot, NOW + timedelta(seconds=2))
    assert statuses(out) == [("deduplicated", "p1", 2, "already sent")]
    assert len(provider.calls) == 2 and second.is_empty(snapshot)


def test_a_job_with_nothing_to_reach_falls_back_at_once():
    delivery = engine(ScriptedProvider())
    chain = [{"channel": "email", "after_seconds": 300, "address": "ana@example.com"}]
    out = delivery.process(delivery.new_state(), [job(devices=[], fallback=chain)], NOW)
    assert statuses(out) == [("failed", None, 1, "no push target")]
    assert [r[0] for r in out if r[0].startswith("notify.outbox.")] == ["notify.outbox.email.normal"]


def test_fallback_only_when_no_device_was_reached():
    chain = [{"channel": "email", "after_seconds": 300, "address": "ana@example.com"}]
    dead = Result("permanent", "UNREGISTERED", state="token_invalid")
    delivery = engine(ScriptedProvider({"p1": [dead]}))
    out = delivery.process(delivery.new_state(), [job(devices=[phone("p1"), phone("p2")], fallback=chain)], NOW)
    assert not [r for r in out if r[0].startswith("notify.outbox.")]  # p2 got it
    delivery = engine(ScriptedProvider({"p1": [dead], "p2": [dead]}))
    state = delivery.new_state()
    out = delivery.process(state, [job(devices=[phone("p1"), phone("p2")], fallback=chain)], NOW)
    assert [r[0] for r in out if r[0].startswith("notify.outbox.")] == ["notify.outbox.email.normal"]
    assert delivery.is_empty(state)


def test_bulk_lanes_collect_a_batch_window_before_sending():
    provider = ScriptedProvider()
    provider.batch_size = 3
    delivery = Delivery(provider, MemoryClaims(), Breakers(), RetryPolicy(jitter=0), random.Random(1),
                        batch_window_s=5)
    state = delivery.new_state()
    assert delivery.process(state, [job(user="a")], NOW) == []
    assert delivery.process(state, [job(user="b")], NOW + timedelta(seconds=2)) == []
    assert provider.calls == [] and delivery.due(state) == NOW + timedelta(seconds=5)
    out = delivery.release(state, NOW + timedelta(seconds=5))
    assert [s[0] for s in statuses(out)] == ["sent", "sent"]
    assert provider.calls == [[("a", "p1", 1), ("b", "p1", 1)]]  # one batch for both
    # A full batch does not wait for the window.
    out = delivery.process(state, [job(user=u) for u in "cde"], NOW + timedelta(seconds=6))
    assert [s[0] for s in statuses(out)] == ["sent"] * 3 and delivery.is_empty(state)


def test_expired_jobs_are_not_sent():
    provider = ScriptedProvider()
    delivery = engine(provider)
    out = delivery.process(delivery.new_state(), [job(expires_at=NOW - timedelta(minutes=1))], NOW)
    assert statuses(out) == [("expired", None, 1, "expired at 2026-11-25T11:59:00+00:00")]
    assert provider.calls == []


def test_a_retry_that_outlives_its_notification_is_dropped():
    provider = ScriptedProvider({"p1": [Result("transient", "503")]})
    delivery = engine(provider, delays=(60,))
    state = delivery.new_state()
    delivery.process(state, [job(expires_at=NOW + timedelta(seconds=30))], NOW)
    out = delivery.release(state, NOW + timedelta(seconds=60))
    assert statuses(out) == [("expired", "p1", 2, "expired at 2026-11-25T12:00:30+00:00")]
    assert len(provider.calls) == 1 and delivery.is_empty(state)


def test_a_user_is_sent_to_at_most_a_hundred_devices_the_newest():
    provider = ScriptedProvider()
    provider.batch_size = 500
    delivery = engine(provider)
    out = delivery.process(delivery.new_state(), [job(devices=[phone(f"p{n}") for n in range(130)])], NOW)
    assert [s[1] for s in statuses(out)] == [f"p{n}" for n in range(30, 130)]
