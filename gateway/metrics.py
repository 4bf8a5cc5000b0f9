"""Prometheus metrics of a gateway process: who is connected, what was sent, how fast."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry()  # the gateway's own, not bytewax's default one
CONNECTIONS = Gauge("notifyflow_gateway_connections", "Open live connections", ["transport"], registry=REGISTRY)
EVENTS_SENT = Counter("notifyflow_gateway_events_sent_total", "Events sent to devices", ["transport", "event"],
                      registry=REGISTRY)
DELIVERY_LATENCY = Histogram(
    "notifyflow_gateway_delivery_seconds", "From the notification's creation to its send to a device",
    ["transport"], registry=REGISTRY,
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))


def sent(transport: str, event: dict) -> None:
    EVENTS_SENT.labels(transport, event["event"]).inc()
    if event["event"] == "notification.created":
        created = datetime.fromisoformat(event["notification"]["created_at"])
        DELIVERY_LATENCY.labels(transport).observe(max(0.0, (datetime.now(UTC) - created).total_seconds()))
