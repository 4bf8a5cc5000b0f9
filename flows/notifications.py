"""The notification flow: from notify.events (plus the user-state topics) to the outbox lanes.

    python -m bytewax.run flows.notifications:flow -r <recovery dir> -s <snapshot seconds>

Each line below is one step; what the step does lives in the module it names. The per-user
steps are keyed by user (tenant and user id, kernel.requests.user_key) and run as one stateful
operator, so a user's notifications stay in order on one worker and all of that user's state is
snapshotted once, together with the input offsets (recovery resumes both together). What the user
does (notify.engagement) reaches the same operator in order with their requests: it cancels
escalations, applies unsubscribes and teaches the user's engagement profile (best send time,
channel affinity, fatigue).
"""

from __future__ import annotations

import functools

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from connectors.config_tables import category_policies, sender_grants
from connectors.kafka import topic_partitions
from connectors.postgres import AudienceMembers
from flows import audience, channels, outbox, preferences
from flows.authorize import authorize
from flows.dedup import DedupMerge
from flows.digest import Digest
from flows.escalation import Escalation
from flows.ingestion import IngestionLimit, IngestionLimits, partition_of
from flows.intake import Intake
from flows.learning import Learning, LearnEngagement
from flows.quiet_hours import QuietHours
from flows.rate_limit import RateLimit
from flows.render import catalog_from_env, render
from flows.send_time import BestSendTime
from flows.templates import TemplateCatalog
from flows.user_state import JoinUserState
from flows.wiring import Encoder, built_on_demand, kafka_sink, kafka_source, keyed_steps, settle_heap
from kernel import logs, policy, settings
from kernel.clock import utcnow
from kernel.keyed import Each, KeyedPipeline
from kernel.requests import user_key
from kernel.topics import ENGAGEMENT, EVENTS, USER_STATE_TOPICS


def build(config: settings.Settings | None = None, *, source=kafka_source, sink=kafka_sink) -> Dataflow:
    """The flow over `config`'s broker. `source` (brokers, topics) and `sink` (brokers) make its Kafka
    input and output; a benchmark passes timed wrappers of the same ones."""
    logs.install()
    config = config or settings.load()
    intake, catalog = Intake(config.schema_registry_url), catalog_from_env()
    brokers = config.kafka_bootstrap_servers.split(",")
    ingestion_limit = IngestionLimit(IngestionLimits.from_env(),
                                     partitions=topic_partitions(config.kafka_bootstrap_servers)[EVENTS])
    encode = Encoder(config.schema_registry_url)
    grants = sender_grants(config.database_url)
    policy.use_overrides(category_policies(config.database_url))  # tenants' policies, re-read every few s

    flow = Dataflow("notifications")
    messages = op.input("read_topics", flow, source(brokers, [EVENTS, ENGAGEMENT, *USER_STATE_TOPICS],
                                                       read_first=USER_STATE_TOPICS))
    items = op.map("decode_and_validate", messages, lambda m: intake.item(
        m.topic, m.partition, m.offset, m.key, m.value, utcnow(), m.timestamp))
    rejected = op.branch("split_rejected", items, lambda item: bool(item.get("outcome")))
    kinds = op.branch("split_user_state", rejected.falses, lambda item: item["kind"] != "notification")
    authorized = op.map("authorize", kinds.falses, functools.partial(authorize, grants=grants))
    by_partition = op.key_on("key_by_partition", authorized, partition_of)
    admitted = op.key_rm("drop_partition_key", keyed_steps("limit_ingestion", by_partition, ingestion_limit))
    over_limit = op.branch("split_over_limit", admitted, lambda item: bool(item.get("outcome")))
    per_user = op.flat_map_batch("expand_audience", over_limit.falses, functools.partial(
        audience.expand, members_of=AudienceMembers(config.database_url)))
    keyed = op.key_on("key_by_user", op.merge("with_user_state", kinds.trues, per_user),
                      lambda item: user_key(item["tenant"], item["user_id"]))
    decided = keyed_steps("per_user_steps", keyed, per_user_steps(catalog))
    done = op.merge("with_rejected", rejected.trues, over_limit.trues, op.key_rm("drop_user_key", decided))
    outgoing = op.flat_map("to_outbox_records", done, lambda item: outbox.outgoing(item, utcnow()))
    op.output("write_topics", op.map("encode", outgoing, encode), sink(brokers))
    settle_heap()
    return flow


def per_user_steps(catalog: TemplateCatalog, learning: Learning | None = None) -> KeyedPipeline:
    """One user's requests, state and engagement, in order, as one stateful step."""
    learning = learning or Learning.from_env()
    return KeyedPipeline([
        ("join_user_state", JoinUserState()),
        ("learn_engagement", LearnEngagement(learning)),
        ("dedup_merge", DedupMerge()),
        ("apply_preferences", Each(preferences.apply, recheck=preferences.apply)),
        ("quiet_hours", QuietHours()),
        ("best_send_time", BestSendTime(learning)),
        ("render_template", Each(functools.partial(render, catalog))),
        ("select_channels", Each(functools.partial(channels.select, learning=learning), recheck=channels.keep_route)),
        ("rate_limit", RateLimit(learning)),
        ("digest", Digest()),
        ("escalate_if_unseen", Escalation()),
    ])


__getattr__ = built_on_demand(build)
