"""A delivery flow: one channel and one lane, from notify.outbox.<channel>.<lane> to the
channel's provider, with a DeliveryStatus for every job on notify.status.

    python -m bytewax.run "flows.delivery:build('in_app', 'critical')" -r <recovery dir> -s 5

Each channel and lane is its own deployment, so a bulk campaign never waits behind, nor
delays, a critical alert. Sinks are idempotent per job, so replays after a crash are safe.
"""

from __future__ import annotations

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSource
from bytewax.dataflow import Dataflow

from connectors import postgres, redis
from connectors.threads import PerThread
from flows.wiring import Encoder, kafka_sink, utcnow
from infra.topics import CHANNELS, LANES, codec_for, outbox_topic
from notifyflow import settings
from sinks import jobs
from sinks.in_app import InAppSink

SINKS = {
    "in_app": lambda config: InAppSink(postgres.connect(config.database_url), redis.client(config.redis_url)),
}


def build(channel: str, lane: str, config: settings.Settings | None = None) -> Dataflow:
    if channel not in SINKS or lane not in LANES:
        raise ValueError(f"no delivery flow for {channel}/{lane}; channels with a sink: {', '.join(SINKS)} "
                         f"(of {', '.join(CHANNELS)}), lanes: {', '.join(LANES)}")
    config = config or settings.load()
    topic, brokers = outbox_topic(channel, lane), config.kafka_bootstrap_servers.split(",")
    codec, sink = codec_for(topic, config.schema_registry_url), PerThread(lambda: SINKS[channel](config))

    flow = Dataflow(f"delivery_{channel}_{lane}")
    messages = op.input("read_outbox", flow, KafkaSource(brokers, [topic]))
    items = op.map("decode_jobs", messages, lambda m: jobs.decode(codec, m.topic, m.partition, m.offset,
                                                                   m.key, m.value))
    records = op.flat_map_batch("deliver", items, lambda batch: jobs.deliver(sink.get(), batch, utcnow()))
    op.output("write_topics", op.map("encode", records, Encoder(config.schema_registry_url)), kafka_sink(brokers))
    return flow
