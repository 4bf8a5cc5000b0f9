"""A delivery flow: one channel and one lane, from notify.outbox.<channel>.<lane> to the
channel's provider, with a DeliveryStatus for every outcome on notify.status.

    python -m bytewax.run "flows.delivery:build('webhook', 'normal')" -r <recovery dir> -s 5

Providers are configured from the environment (SMTP_URL or EMAIL_TRANSPORT=ses, APNS_*,
GOOGLE_APPLICATION_CREDENTIALS, VAPID_PRIVATE_KEY, AWS_*; see each sinks/<provider>.py).
Each channel and lane is its own deployment, so a bulk campaign never waits behind, nor
delays, a critical alert. Provider channels run through sinks/engine.py in a few shards per
worker: jobs batch across users, and jobs waiting for a retry sit in the shard's snapshotted
state with a timer. The in-app channel needs none of that: its rows are its idempotency.
"""

from __future__ import annotations

import os
import zlib

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from connectors import postgres, redis
from connectors.threads import PerThread
from flows.wiring import Encoder, kafka_sink, kafka_source, keyed_steps
from kernel import logs, records, settings
from kernel.clock import utcnow
from kernel.requests import routing_key
from kernel.topics import CHANNELS, LANES, codec_for, outbox_topic
from sinks import jobs
from sinks.circuit import Breakers
from sinks.claims import RedisClaims
from sinks.email import EmailProvider
from sinks.email_suppressions import PostgresSuppressions
from sinks.engine import Delivery
from sinks.in_app import InAppSink
from sinks.push import PushProviders
from sinks.retry import RetryPolicy
from sinks.sms import SmsProvider
from sinks.webhook import WebhookProvider

SHARDS = 16
# Bulk sends wait up to this long to fill provider-sized batches (FCM takes 500 a call).
BULK_BATCH_WINDOW_S = 5.0
PROVIDERS = {
    "webhook": lambda config: WebhookProvider(postgres.WebhookEndpoints(config.database_url)),
    "sms": lambda config: SmsProvider.from_env(os.environ),
    "email": lambda config: EmailProvider.from_env(os.environ, PostgresSuppressions(config.database_url)),
    "push": lambda config: PushProviders.from_env(os.environ),
}


def build(channel: str, lane: str, config: settings.Settings | None = None) -> Dataflow:
    if channel not in {"in_app", *PROVIDERS} or lane not in LANES:
        raise ValueError(f"no delivery flow for {channel}/{lane}; channels with a sink: in_app, "
                         f"{', '.join(PROVIDERS)} (of {', '.join(CHANNELS)}), lanes: {', '.join(LANES)}")
    logs.install()
    config = config or settings.load()
    topic, brokers = outbox_topic(channel, lane), config.kafka_bootstrap_servers.split(",")
    codec = codec_for(topic, config.schema_registry_url)

    flow = Dataflow(f"delivery_{channel}_{lane}")
    messages = op.input("read_outbox", flow, kafka_source(brokers, [topic]))
    items = op.map("decode_jobs", messages, lambda m: jobs.decode(codec, m.topic, m.partition, m.offset,
                                                                   m.key, m.value))
    decoded = op.branch("split_undecodable", items, lambda item: "job" in item)
    dead = op.map("dead_letters", decoded.falses, lambda item: records.dead_letter(item, utcnow()))
    if channel == "in_app":
        sink = PerThread(lambda: InAppSink.reconnecting(config.database_url, config.redis_url))
        delivered = op.flat_map_batch("deliver", decoded.trues, lambda batch: [
            records.status_record(s) for s in sink.get().deliver([item["job"] for item in batch], utcnow())])
    else:
        engine = Delivery(PROVIDERS[channel](config), RedisClaims(redis.client(config.redis_url)), Breakers(),
                          retry_policy(), batch_window_s=BULK_BATCH_WINDOW_S if lane == "bulk" else 0.0)
        sharded = op.key_on("key_by_shard", op.map("jobs", decoded.trues, lambda item: item["job"]), shard_of)
        delivered = op.key_rm("drop_shard_key", keyed_steps("deliver", sharded, engine))
    outgoing = op.merge("with_dead_letters", dead, delivered)
    encode = Encoder(config.schema_registry_url, lane)
    op.output("write_topics", op.map("encode", outgoing, encode), kafka_sink(brokers))
    return flow


def retry_policy() -> RetryPolicy:
    """NOTIFYFLOW_RETRY_DELAYS="1,2,4,8,16" (seconds before each retry) tunes the backoff."""
    delays = os.environ.get("NOTIFYFLOW_RETRY_DELAYS")
    return RetryPolicy(delays=tuple(float(d) for d in delays.split(","))) if delays else RetryPolicy()


def shard_of(job: dict) -> str:
    """A few keys per flow, so sends batch across users; crc32 is stable across processes."""
    return str(zlib.crc32(routing_key(job)) % SHARDS)
