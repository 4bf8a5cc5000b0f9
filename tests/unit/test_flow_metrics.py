"""What the processes export for the alerts: the flows' counts, taken where every record they write is
encoded; circuit breakers' state; the gateway's connection limit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import REGISTRY

from flows.wiring import Encoder
from gateway import metrics as gateway_metrics
from kernel import records
from sinks.circuit import CircuitBreaker

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def value(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def sent(channel: str, state: str, provider: str | None, latency_s: float) -> records.Outgoing:
    return records.status_record(records.status(
        notification_id="n1", user_id="u1", tenant="acme", state=state, channel=channel, category="messages",
        campaign_id=None, variant=None, created_at=NOW - timedelta(seconds=latency_s), at=NOW, provider=provider))


def test_the_encoder_counts_statuses_latency_and_dead_letters_once_for_every_flow():
    encode = Encoder(None, lane="critical")
    labels = {"channel": "push", "status": "sent", "provider": "fcm"}
    before = value("notifyflow_statuses_total", **labels)
    fast = value("notifyflow_delivery_latency_seconds_bucket", channel="push", lane="critical", le="0.05")
    total = value("notifyflow_delivery_latency_seconds_count", channel="push", lane="critical")
    encode(sent("push", "sent", "fcm", 0.04))
    encode(sent("push", "sent", "fcm", 2.0))
    encode(sent("push", "failed", "fcm", 2.0))  # counted, but a failure has no delivery latency
    assert value("notifyflow_statuses_total", **labels) == before + 2
    assert value("notifyflow_statuses_total", channel="push", status="failed", provider="fcm") >= 1
    assert value("notifyflow_delivery_latency_seconds_count", channel="push", lane="critical") == total + 2
    assert value("notifyflow_delivery_latency_seconds_bucket", channel="push", lane="critical", le="0.05") == fast + 1

    dead = value("notifyflow_dead_letters_total", stage="render")
    source = records.source("notify.events", 0, 7, b"u1", b"\x00")
    encode(records.dead_letter(records.rejected(source, "render", "template missing"), NOW))
    assert value("notifyflow_dead_letters_total", stage="render") == dead + 1


def test_an_open_circuit_shows_until_a_trial_closes_it():
    breaker = CircuitBreaker("test-provider", failure_threshold=2, window_s=10, open_s=5)
    opened = value("notifyflow_circuit_opened_total", circuit="test-provider")
    breaker.record_failure(0.0)
    breaker.record_failure(1.0)
    assert value("notifyflow_circuit_open", circuit="test-provider") == 1
    assert value("notifyflow_circuit_opened_total", circuit="test-provider") == opened + 1
    assert breaker.allow(7.0)  # half-open: still shown open until the trial succeeds
    assert value("notifyflow_circuit_open", circuit="test-provider") == 1
    breaker.record_success(7.5)
    assert value("notifyflow_circuit_open", circuit="test-provider") == 0


def test_the_gateway_connection_limit_is_what_the_deployment_sized_or_what_descriptors_allow():
    assert gateway_metrics.connection_limit({"GATEWAY_MAX_CONNECTIONS": "50000"}) == 50_000
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert gateway_metrics.connection_limit({}) == soft - gateway_metrics.OWN_DESCRIPTORS
    exported = {sample.name for family in gateway_metrics.REGISTRY.collect() for sample in family.samples}
    assert {"notifyflow_gateway_connection_limit", "process_open_fds", "process_max_fds"} <= exported
