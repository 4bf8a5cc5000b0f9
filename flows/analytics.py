"""The analytics flow: notify.status and notify.engagement (and erasure tombstones from
notify.preferences) into ClickHouse, which rolls them up per minute (a projection of the raw table).

    notifyflow analytics                          # this flow plus the analysts' dashboard, one process
    python -m bytewax.run flows.analytics:flow -r <recovery dir> -s 5    # the flow alone (real ClickHouse)

Rows are collected per source partition (in the snapshotted state, so a crash loses none) and
written in batches; the writer skips what a previous run already stored (analytics/store.py).
"""

from __future__ import annotations

from datetime import timedelta

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from analytics import pseudonym
from analytics.rows import TOPICS, Rows, source_partition
from analytics.store import RawEvents
from connectors import clickhouse
from flows.wiring import ClickHouseSink, Encoder, built_on_demand, kafka_sink, kafka_source
from kernel import logs, records, settings
from kernel.clock import utcnow

BATCH_ROWS = 5000
BATCH_WAIT = timedelta(seconds=1)


def build(config: settings.Settings | None = None, keys: pseudonym.UserKeys | None = None) -> Dataflow:
    logs.install()
    config = config or settings.load()
    rows = Rows(keys or pseudonym.from_env(), config.schema_registry_url)
    brokers = config.kafka_bootstrap_servers.split(",")

    flow = Dataflow("analytics")
    messages = op.input("read_topics", flow, kafka_source(brokers, list(TOPICS)))
    items = op.map("to_rows", messages, lambda m: rows.item(m.topic, m.partition, m.offset, m.key, m.value,
                                                             utcnow()))
    decoded = op.branch("split_undecodable", items, lambda item: item.get("outcome") != "dead_letter")
    dead = op.map("dead_letters", decoded.falses, lambda item: records.dead_letter(item, utcnow()))
    op.output("write_dead_letters", op.map("encode", dead, Encoder(config.schema_registry_url)), kafka_sink(brokers))
    kept = op.filter("drop_irrelevant", decoded.trues, bool)
    by_partition = op.key_on("key_by_source_partition", kept, source_partition)
    batches = op.collect("batch_rows", by_partition, timeout=BATCH_WAIT, max_size=BATCH_ROWS)
    op.output("write_clickhouse", op.key_rm("drop_partition_key", batches),
              ClickHouseSink(lambda: RawEvents(clickhouse.client(config.clickhouse_url))))
    return flow


__getattr__ = built_on_demand(build)
