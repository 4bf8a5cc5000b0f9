"""Delivery through a provider: claims, batches, concurrent sends, retries, circuit breaking,
permanent-failure handling and fallback to the next channel. The provider only knows how to
send one batch; everything around it is here, the same for every channel.

It runs as a per-shard step of the delivery flow (a KeyedStep): jobs waiting for a retry
live in the shard's state with a timer, so they survive a restart and never block the others.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from kernel import records
from kernel.keyed import KeyedStep
from kernel.records import Outgoing, status_record
from kernel.requests import routing_key
from kernel.topics import DEVICES, codec_for, outbox_topic
from sinks import loop
from sinks.circuit import Breakers
from sinks.claims import FRESH, RESUMED, SENT, claim_prefix
from sinks.jobs import status
from sinks.retry import RetryPolicy, RetryQueue

MAX_TARGETS_PER_JOB = 100


@dataclass
class Send:
    """One attempt to reach one target (a device, an address, an endpoint) for one job."""

    job: dict
    device: dict | None = None
    attempt: int = 1

    @property
    def claim_key(self) -> str:
        job = self.job
        device = self.device["device_id"] if self.device else "-"
        return (f"{claim_prefix(job['tenant'])}{job['notification_id']}:{job['user_id']}:{job['channel']}:{device}:"
                f"{job['revision']}")


@dataclass
class Result:
    outcome: str  # sent | transient | permanent
    reason: str | None = None
    retry_after: float | None = None
    # For permanent failures: token_invalid (forget the device), bounced (disable the address) or failed.
    state: str = "failed"
    provider_id: str | None = None


class Provider(Protocol):
    """One provider API. A channel served by several (push) is a provider with a `route(send)`
    method naming the provider of each send; each routed provider has its own circuit breaker,
    or one per `circuit(send)` name when it has that method (webhooks: one per tenant endpoint)."""

    name: str  # the circuit breaker's key, e.g. "fcm"
    batch_size: int

    def targets(self, job: dict) -> list[dict | None]:
        """The devices a job goes to (push), or [None] for an address or endpoint channel."""

    async def send(self, sends: list[Send]) -> list[Result]:
        """One result per send, in order; sends run concurrently inside."""


class Claims(Protocol):
    """See sinks/claims.py."""

    def claim(self, keys: list[str]) -> list[str]: ...
    def confirm(self, keys: list[str]) -> None: ...
    def release(self, keys: list[str]) -> None: ...


@dataclass
class Delivery(KeyedStep):
    provider: Provider
    claims: Claims
    breakers: Breakers
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    rng: random.Random = field(default_factory=random.Random)
    # Bulk lanes wait this long to fill provider-sized batches; 0 sends what each poll brings.
    batch_window_s: float = 0.0

    def new_state(self) -> dict:
        # open: per job, targets still in flight and whether any was reached (fallback needs all to fail)
        return {"waiting": RetryQueue(), "open": {}, "collecting": [], "collect_until": None}

    def process(self, state: dict, jobs: list[dict], now: datetime) -> list[Outgoing]:
        if not self.batch_window_s:
            return self.start(state, jobs, now)
        state["collecting"] += jobs
        if state["collect_until"] is None:
            state["collect_until"] = now.timestamp() + self.batch_window_s
        if len(state["collecting"]) >= self.provider.batch_size:
            return self.flush(state, now)
        return []

    def flush(self, state: dict, now: datetime) -> list[Outgoing]:
        jobs, state["collecting"], state["collect_until"] = state["collecting"], [], None
        return self.start(state, jobs, now)

    def start(self, state: dict, jobs: list[dict], now: datetime) -> list[Outgoing]:
        """Claim every target of the jobs and send the ones not sent or in hand already."""
        sends, out = [], []
        for job in jobs:
            if expired(job, now):
                out.append(expired_status(job, now, self.provider.name))
                continue
            # The most recently registered, when a user has more devices than anyone reasonably uses.
            targets = self.provider.targets(job)[-MAX_TARGETS_PER_JOB:]
            if not targets:
                out += self.give_up(Send(job), Result("permanent", f"no {job['channel']} target"), now)
            sends += [Send(job, device) for device in targets]
        fresh, duplicates = self.claim(sends)
        for send in fresh:
            progress = state["open"].setdefault(send.job["job_id"], {"left": 0, "reached": False})
            progress["left"] += 1
        for send in duplicates:  # a replay after a crash, or a second copy of a job in hand
            out.append(status_record(status(send.job, "deduplicated", now, device=send.device,
                                            provider=self.route(send).name, reason="already claimed")))
            if send.job["job_id"] in state["open"]:  # a target already reached counts for the fallback decision
                state["open"][send.job["job_id"]]["reached"] = True
        return out + self.attempt(fresh, state, now)

    def claim(self, sends: list[Send]) -> tuple[list[Send], list[Send]]:
        """(to send, already sent or in hand); the same target twice in one batch is sent once."""
        seen: set[str] = set()
        unique = [send for send in sends if not (send.claim_key in seen or seen.add(send.claim_key))]
        answers = self.claims.claim([send.claim_key for send in unique])
        fresh = [send for send, answer in zip(unique, answers) if answer in (FRESH, RESUMED)]
        kept = {id(send) for send in fresh}
        return fresh, [send for send in sends if id(send) not in kept]

    def due(self, state: dict) -> datetime | None:
        times = [t for t in (state["waiting"].next_due(), state["collect_until"]) if t is not None]
        return datetime.fromtimestamp(min(times), UTC) if times else None

    def release(self, state: dict, now: datetime) -> list[Outgoing]:
        due, out = state["waiting"].pop_due(now.timestamp()), []
        for send in (send for send in due if expired(send.job, now)):  # it waited out an outage
            self.finish(state, send.job, reached=False)
            out.append(expired_status(send.job, now, self.route(send).name, send))
        due = [send for send in due if not expired(send.job, now)]
        # A retry restored from a snapshot may have been sent after that snapshot, before a crash.
        sent = {send.claim_key for send, answer in zip(due, self.claims.claim([s.claim_key for s in due]))
                if answer == SENT}
        for send in (send for send in due if send.claim_key in sent):
            self.finish(state, send.job, reached=True)
            out.append(status_record(status(send.job, "deduplicated", now, attempt=send.attempt, device=send.device,
                                            provider=self.route(send).name, reason="already sent")))
        out += self.attempt([send for send in due if send.claim_key not in sent], state, now)
        if state["collect_until"] is not None and state["collect_until"] <= now.timestamp():
            out += self.flush(state, now)
        return out

    def is_empty(self, state: dict) -> bool:
        return not state["waiting"] and not state["open"] and not state["collecting"]

    def attempt(self, sends: list[Send], state: dict, now: datetime) -> list[Outgoing]:
        """Send through each send's provider, a batch at a time, past the circuit breaker of each
        send's circuit (its provider; for webhooks, its tenant's endpoint)."""
        groups: dict[str, tuple[Provider, list[Send]]] = {}
        for send in sends:
            provider = self.route(send)
            groups.setdefault(provider.name, (provider, []))[1].append(send)
        out, stamp = [], now.timestamp()
        for provider, group in groups.values():
            ready, held = [], []
            for send in group:
                (ready if self.breaker(send).allow(stamp) else held).append(send)
            for send in held:
                out += self.hold(send, provider.name, state, now)
            results = loop.run(send_in_batches(provider, ready)) if ready else []
            self.claims.confirm([send.claim_key for send, result in zip(ready, results) if result.outcome == "sent"])
            for send, result in zip(ready, results):
                out += self.settle(send, result, provider.name, state, now)
        return out

    def breaker(self, send: Send):
        provider = self.route(send)
        circuit = getattr(provider, "circuit", None)
        return self.breakers[circuit(send) if circuit else provider.name]

    def hold(self, send: Send, provider: str, state: dict, now: datetime) -> list:
        """Its circuit is open. A job with a next channel goes there now; the others wait for the
        circuit's next trial, spending no attempt (nothing was tried). Each trial is an attempt, so
        a provider that stays down still ends in the dead-letter topic once the attempts run out."""
        breaker = self.breaker(send)
        reason = f"circuit open for {breaker.name}"
        if send.job["fallback"]:
            return self.give_up(send, Result("transient", reason), now, provider, state)
        state["waiting"].push(breaker.trial_at(now.timestamp()), send)
        return [status_record(status(send.job, "retried", now, attempt=send.attempt, device=send.device,
                                     provider=provider, reason=f"{reason}: waiting"))]

    def route(self, send: Send) -> Provider:
        # A channel served by several providers (push: APNs, FCM, Web Push) picks one per device.
        route = getattr(self.provider, "route", None)
        return route(send) if route else self.provider

    def settle(self, send: Send, result: Result, provider: str, state: dict, now: datetime) -> list:
        stamp, breaker = now.timestamp(), self.breaker(send)
        if result.outcome == "sent":
            breaker.record_success(stamp)
            self.finish(state, send.job, reached=True)
            return [status_record(status(send.job, "sent", now, attempt=send.attempt, device=send.device,
                                         provider=provider))]
        if result.outcome == "permanent":  # the provider is fine; the target is not
            return self.give_up(send, result, now, provider, state)
        breaker.record_failure(stamp)
        delay = self.policy.delay(send.attempt, self.rng, result.retry_after)
        if delay is None:
            return self.give_up(send, result, now, provider, state)
        state["waiting"].push(stamp + delay, Send(send.job, send.device, send.attempt + 1))
        return [status_record(status(send.job, "retried", now, attempt=send.attempt, device=send.device,
                                     provider=provider, reason=result.reason))]

    def finish(self, state: dict, job: dict, reached: bool) -> bool:
        """Count one target of the job as done; True when it was the last and none was reached."""
        progress = state["open"].get(job["job_id"])
        if progress is None:
            return not reached
        progress["left"] -= 1
        progress["reached"] = progress["reached"] or reached
        if progress["left"] > 0:
            return False
        del state["open"][job["job_id"]]
        return not progress["reached"]

    def give_up(self, send: Send, result: Result, now: datetime, provider: str | None = None,
                state: dict | None = None) -> list:
        """The target cannot be reached: say why, clean up, and, once no target of the job was
        reached, try the next channel; with none left, dead-letter it."""
        self.claims.release([send.claim_key])  # nothing was sent: a later replay may try again
        job, out = send.job, []
        out.append(status_record(status(job, result.state, now, attempt=send.attempt, device=send.device,
                                        provider=provider or self.provider.name, reason=result.reason)))
        if result.state == "token_invalid" and send.device:
            out.append((DEVICES, routing_key(job), forget_device(job, send.device, now)))
        # Dead-lettered only with nowhere else to go: the next channel takes it, or a device was reached.
        if not job["fallback"] and (result.outcome == "transient" or result.state == "failed"):
            out.append(dead_letter(job, result, send.attempt, now))
        nothing_reached = state is None or self.finish(state, job, reached=False)
        if job["fallback"] and nothing_reached:
            out.append(fallback_job(job))
        return out


async def send_in_batches(provider: Provider, sends: list[Send]) -> list[Result]:
    """The provider's batches one after the other, on the delivery loop (sinks/loop.py)."""
    results: list[Result] = []
    for start in range(0, len(sends), provider.batch_size):
        results += await provider.send(sends[start:start + provider.batch_size])
    return results


def expired(job: dict, now: datetime) -> bool:
    return job["expires_at"] is not None and job["expires_at"] <= now


def expired_status(job: dict, now: datetime, provider: str, send: Send | None = None) -> tuple:
    return status_record(status(job, "expired", now, attempt=send.attempt if send else 1,
                                device=send.device if send else None, provider=provider,
                                reason=f"expired at {job['expires_at'].isoformat()}"))


def forget_device(job: dict, device: dict, now: datetime) -> dict:
    """A DeviceRegistered tombstone: the notification flow stops targeting the dead token."""
    return {"user_id": job["user_id"], "device_id": device["device_id"], "platform": device["platform"],
            "token": device["token"], "web_push": device["web_push"], "app_version": None,
            "registered_at": now, "active": False, "tenant": job["tenant"]}


def dead_letter(job: dict, result: Result, attempts: int, now: datetime) -> Outgoing:
    """The job's own bytes, so on-call can replay it as it was once the provider is fixed."""
    topic = outbox_topic(job["channel"], job["lane"])
    source = records.source(topic, -1, -1, routing_key(job), codec_for(topic).encode(job))
    return records.dead_letter(records.rejected(source, f"deliver_{job['channel']}", result.reason or "failed"), now,
                               attempts=attempts, first_seen=job["created_at"])


def fallback_job(job: dict) -> Outgoing:
    """The same notification on the next channel of its chain, at once: this one failed."""
    step, rest = job["fallback"][0], job["fallback"][1:]
    channel = step["channel"]
    moved = {**job, "channel": channel, "fallback": rest, "address": step["address"],
             "job_id": records.job_id(job, channel)}
    return (outbox_topic(channel, job["lane"]), routing_key(job), moved)
