"""bytewax serves prometheus_client's default registry: a flow run the way the image runs one
(`python -m bytewax.run` with a recovery store and BYTEWAX_DATAFLOW_API_ENABLED) answers /metrics
with bytewax's own metrics, its Kafka lag gauge's family and the flows' metrics the alerts read."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from notifyflow.processes import init_recovery
from notifyflow.stack import free_port, stop_process, wait_until

REPO = Path(__file__).resolve().parents[2]
# Encodes one sent status and one dead letter, opens a circuit, then idles until stopped.
FLOW = textwrap.dedent('''
    import time
    from datetime import UTC, datetime, timedelta

    import bytewax.connectors.kafka  # registers bytewax_kafka_consumer_lag, as every flow of ours does
    import bytewax.operators as op
    from bytewax.dataflow import Dataflow
    from bytewax.inputs import DynamicSource, StatelessSourcePartition
    from bytewax.outputs import DynamicSink, StatelessSinkPartition

    from flows.wiring import Encoder
    from kernel import records
    from sinks.circuit import CircuitBreaker

    NOW = datetime.now(UTC)
    OUT = [records.status_record(records.status(
               notification_id="n1", user_id="u1", tenant="acme", state="sent", channel="in_app", category="c",
               campaign_id=None, variant=None, created_at=NOW - timedelta(milliseconds=30), at=NOW,
               provider="notification-center")),
           records.dead_letter(records.rejected(records.source("t", 0, 1, b"u1", b"x"), "decode", "bad"), NOW)]
    breaker = CircuitBreaker("probe", failure_threshold=1)
    breaker.record_failure(0.0)


    class Once(StatelessSourcePartition):
        def __init__(self):
            self.items = list(OUT)

        def next_batch(self):
            if not self.items:
                time.sleep(0.05)
            items, self.items = self.items, []
            return items


    class Source(DynamicSource):
        def build(self, step_id, worker_index, worker_count):
            return Once()


    class Discard(StatelessSinkPartition):
        def write_batch(self, items):
            pass


    class Sink(DynamicSink):
        def build(self, step_id, worker_index, worker_count):
            return Discard()


    flow = Dataflow("probe")
    encoded = op.map("encode", op.input("read", flow, Source()), Encoder(None, lane="high"))
    op.output("write", op.key_rm("unkey", op.reduce_final("hold", op.key_on("key", encoded, lambda m: "k"),
                                                          lambda a, b: b)), Sink())
''')


def test_bytewax_serves_the_default_registry_with_its_own_metrics(tmp_path):
    (tmp_path / "probe_flow.py").write_text(FLOW)
    port = free_port()
    init_recovery(tmp_path / "recovery")
    env = {**os.environ, "BYTEWAX_DATAFLOW_API_ENABLED": "true", "BYTEWAX_DATAFLOW_API_PORT": str(port),
           "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    log = tmp_path / "flow.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "bytewax.run", "probe_flow:flow", "-r",
                                    str(tmp_path / "recovery"), "-s", "1", "-b", "0"], cwd=tmp_path, env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
    try:
        def scraped() -> tuple[str, dict]:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            samples = {s.name: s for f in text_string_to_metric_families(text) for s in f.samples}
            assert "notifyflow_statuses_total" in samples and "bytewax_snapshot_duration_seconds_count" in samples
            return text, samples

        wait_until(scraped, "the probe flow's /metrics", process, log)
        text, samples = scraped()
    finally:
        stop_process(process)
    assert samples["notifyflow_statuses_total"].labels == {"channel": "in_app", "status": "sent",
                                                           "provider": "notification-center"}
    assert samples["notifyflow_dead_letters_total"].labels == {"stage": "decode"}
    assert samples["notifyflow_circuit_open"].labels == {"circuit": "probe"}
    assert 'notifyflow_delivery_latency_seconds_bucket{channel="in_app",lane="high",le="0.05"} 1.0' in text
    assert "# TYPE bytewax_kafka_consumer_lag gauge" in text
    for name in ("bytewax_snapshot_duration_seconds_count", "bytewax_item_inp_count_total",
                 "bytewax_inp_part_next_batch_duration_seconds_bucket", "process_resident_memory_bytes"):
        assert name in samples, name
