"""Prometheus metrics of the flows, counted at the one place every record they write passes
(flows.wiring.Encoder), so each flow gets them without a line of its own.

They live in prometheus_client's default registry, which bytewax serves, after its own metrics, at
http://<process>:3030/metrics when BYTEWAX_DATAFLOW_API_ENABLED is set (BYTEWAX_DATAFLOW_API_PORT
moves it). The alert rules in deploy/prometheus/ use them.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from kernel.topics import DLQ, STATUS

# The statuses ClickHouse counts as a success and as a failed send (notifyflow.delivery_success).
SUCCEEDED = {"sent", "delivered"}
STATUSES = Counter("notifyflow_statuses", "DeliveryStatus records written, by channel, status and provider",
                   ["channel", "status", "provider"])
DEAD_LETTERS = Counter("notifyflow_dead_letters", "Records moved to the dead-letter topic, by stage", ["stage"])
JOBS = Counter("notifyflow_outbox_jobs", "Delivery jobs written to an outbox, by channel and lane", ["channel", "lane"])
# Fine around the 100 ms target; the long buckets hold what waited on purpose (retries, fallbacks).
LATENCY = Histogram(
    "notifyflow_delivery_latency_seconds",
    "From the notification's creation to its send to the provider (sent) or into the notification center "
    "(delivered), by channel and, in delivery flows, lane", ["channel", "lane"],
    buckets=(0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600))


def observe(topic: str, value: dict, lane: str = "") -> None:
    """Count one outgoing record (before encoding) of a flow whose outbox lane, if any, is `lane`."""
    if topic == STATUS:
        channel = value["channel"] or ""
        labelled(STATUSES, channel, value["status"], value["provider"] or "").inc()
        if value["status"] in SUCCEEDED:
            labelled(LATENCY, channel, lane).observe(max(0.0, (value["at"] - value["created_at"]).total_seconds()))
    elif topic == DLQ:
        labelled(DEAD_LETTERS, value["stage"]).inc()
    elif "lane" in value and "job_id" in value:
        labelled(JOBS, value["channel"], value["lane"]).inc()


_children: dict[tuple, Counter | Histogram] = {}


def labelled(metric: Counter | Histogram, *labels: str) -> Counter | Histogram:
    """metric.labels(*labels), looked up once: labels() checks and locks on every call, which cost the
    notification flow 3 % of its time at two or three records an event."""
    try:
        return _children[(metric, *labels)]
    except KeyError:
        child = _children[(metric, *labels)] = metric.labels(*labels)
        return child
