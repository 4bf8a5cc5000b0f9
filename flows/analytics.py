"""The analytics flow: notify.status and notify.engagement (and erasure tombstones from
notify.preferences) into ClickHouse, which rolls them up per minute (a projection of the raw table).

    notifyflow analytics                          # this flow plus the analysts' dashboard, one process
    python -m bytewax.run flows.analytics:flow -r <recovery dir> -s 5    # the flow alone (real ClickHouse)

Records are turned into rows a batch at a time, the rows of each source partition as one item;
they wait per source partition (in the snapshotted state, so a crash loses none) for the next
tick of a shared clock, which releases every partition's rows together into one insert
(analytics/batches.py); the writer skips what a previous run already stored (analytics/store.py).
"""

from __future__ import annotations

from datetime import timedelta

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from analytics import pseudonym
from analytics.batches import Batches
from analytics.rows import TOPICS, Rows, source_partition
from analytics.store import RawEvents
from connectors import clickhouse
from flows.wiring import ClickHouseSink, Encoder, built_on_demand, kafka_sink, kafka_source, keyed_steps, settle_heap
from kernel import logs, records, settings
from kernel.clock import utcnow

BATCH_ROWS = 50_000  # rows a source partition gathers before it goes without waiting for the clock
BATCH_WAIT = timedelta(seconds=1)  # the clock's tick: how long rows may wait for company


def build(config: settings.Settings | None = None, keys: pseudonym.UserKeys | None = None) -> Dataflow:
    logs.install()
    config = config or settings.load()
    rows = Rows(keys or pseudonym.from_env(), config.schema_registry_url)
    brokers = config.kafka_bootstrap_servers.split(",")

    flow = Dataflow("analytics")
    messages = op.input("read_topics", flow, kafka_source(brokers, list(TOPICS)))
    items = op.flat_map_batch("to_rows", messages, lambda batch: rows.items(batch, utcnow()))
    decoded = op.branch("split_undecodable", items, lambda item: item.get("outcome") != "dead_letter")
    dead = op.map("dead_letters", decoded.falses, lambda item: records.dead_letter(item, utcnow()))
    op.output("write_dead_letters", op.map("encode", dead, Encoder(config.schema_registry_url)), kafka_sink(brokers))
    by_partition = op.key_on("key_by_source_partition", decoded.trues, source_partition)
    batches = keyed_steps("batch_rows", by_partition, Batches(BATCH_ROWS, BATCH_WAIT))
    op.output("write_clickhouse", op.key_rm("drop_partition_key", batches),
              ClickHouseSink(lambda: RawEvents(clickhouse.client(config.clickhouse_url))))
    settle_heap()
    return flow


__getattr__ = built_on_demand(build)
