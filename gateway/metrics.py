"""Prometheus metrics of a gateway process: who is connected, what was sent, how fast."""

from __future__ import annotations

import os
import resource
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

REGISTRY = CollectorRegistry()  # the gateway's own, not bytewax's default one
CONNECTIONS = Gauge("notifyflow_gateway_connections", "Open live connections", ["transport"], registry=REGISTRY)
EVENTS_SENT = Counter("notifyflow_gateway_events_sent_total", "Events sent to devices", ["transport", "event"],
                      registry=REGISTRY)
DELIVERY_LATENCY = Histogram(
    "notifyflow_gateway_delivery_seconds", "From the notification's creation to its send to a device",
    ["transport"], registry=REGISTRY,
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
# What bounds the connections: open and maximum file descriptors (one per connection), resident memory.
ProcessCollector(registry=REGISTRY)
CONNECTION_LIMIT = Gauge("notifyflow_gateway_connection_limit", "Live connections this process is sized for",
                         registry=REGISTRY)
# Descriptors a gateway holds besides its connections: listening socket, database pool, Redis, Kafka, files.
OWN_DESCRIPTORS = 100


def connection_limit(environ=os.environ) -> int:
    """GATEWAY_MAX_CONNECTIONS (the deployment sizes the pod's memory for it), or what the process's
    file-descriptor limit leaves for connections."""
    if given := environ.get("GATEWAY_MAX_CONNECTIONS"):
        return int(given)
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(0, soft - OWN_DESCRIPTORS) if soft != resource.RLIM_INFINITY else 0


CONNECTION_LIMIT.set(connection_limit())


def sent(transport: str, event: dict) -> None:
    EVENTS_SENT.labels(transport, event["event"]).inc()
    # An event without its creation time is sent all the same: a failure here would end the sender.
    if event["event"] == "notification.created" and (created_at := event["notification"].get("created_at")):
        created = datetime.fromisoformat(created_at)
        DELIVERY_LATENCY.labels(transport).observe(max(0.0, (datetime.now(UTC) - created).total_seconds()))
