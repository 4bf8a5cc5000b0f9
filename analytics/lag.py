"""Queue depth from the flows' own metrics: bytewax's Kafka source publishes each input partition's
consumer lag (broker end offset minus the flow's position) as the gauge below. This process reads
its own registry, and the other flows' /metrics endpoints (BYTEWAX_DATAFLOW_API_ENABLED=true on
each flow, listed in ANALYTICS_FLOW_METRICS as name=url,...), and keeps samples in ClickHouse."""

from __future__ import annotations

from datetime import datetime

import httpx
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

GAUGE = "bytewax_kafka_consumer_lag"


def lags(metrics_text: str) -> list[tuple[str, int, int]]:
    """(topic, partition, lag) of every Kafka input in a Prometheus exposition."""
    return [(sample.labels["topic"], int(sample.labels["partition"]), int(sample.value))
            for family in text_string_to_metric_families(metrics_text) if family.name == GAUGE
            for sample in family.samples if sample.name == GAUGE]


def endpoints(spec: str) -> dict[str, str]:
    """ANALYTICS_FLOW_METRICS: "notifications=http://10.0.0.5:3030/metrics,push_normal=..."."""
    pairs = [entry.split("=", 1) for entry in spec.split(",") if entry.strip()]
    if any(len(pair) != 2 for pair in pairs):
        raise ValueError(f"ANALYTICS_FLOW_METRICS entries are name=url, got {spec!r}")
    return {name.strip(): url.strip() for name, url in pairs}


def sample(flows: dict[str, str], now: datetime) -> list[list]:
    """Rows for notifyflow.flow_lag: this process's flow ("analytics") and every reachable endpoint."""
    texts = {"analytics": generate_latest(REGISTRY).decode()}
    for name, url in flows.items():
        try:
            texts[name] = httpx.get(url, timeout=2).text
        except httpx.HTTPError:
            continue  # a flow that is down has no lag to report; its absence shows on the dashboard
    return [[now, flow, topic, partition, lag] for flow, text in texts.items() for topic, partition, lag in lags(text)]
