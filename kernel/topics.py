"""The topic map: every topic, the Avro schema of its values, and how it is kept.

Every record is keyed by user id (or audience id for fan-out requests), so one user's
records land on one partition: ordered, and handled by one worker downstream.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass

from confluent_kafka.schema_registry import SchemaRegistryClient

from schemas import AvroCodec


@dataclass(frozen=True)
class TopicSpec:
    name: str
    schema: str
    compacted: bool = False
    partitions: int | None = None  # None: the deployment default

    def config(self) -> dict[str, str]:
        return {"cleanup.policy": "compact"} if self.compacted else {}


# The one place topic names are written; everything else uses these names.
EVENTS = "notify.events"
PREFERENCES = "notify.preferences"
DEVICES = "notify.devices"
PRESENCE = "notify.presence"
STATUS = "notify.status"
ENGAGEMENT = "notify.engagement"
DLQ = "notify.dlq"
# Latest state per user, compacted; the notification flow joins them with the user's requests.
USER_STATE_TOPICS = (PREFERENCES, DEVICES, PRESENCE)

CHANNELS = ("push", "email", "sms", "webhook", "in_app")
# Separate lanes so a bulk campaign never queues ahead of a critical alert.
LANES = ("critical", "high", "normal", "bulk")


def outbox_topic(channel: str, lane: str) -> str:
    return f"notify.outbox.{channel}.{lane}"


OUTBOX_TOPICS = tuple(outbox_topic(channel, lane) for channel in CHANNELS for lane in LANES)


TOPICS = (
    TopicSpec(EVENTS, "NotificationRequested"),
    # A preferences record with deleted=true is the erasure tombstone.
    TopicSpec(PREFERENCES, "PreferencesUpdated", compacted=True),
    TopicSpec(DEVICES, "DeviceRegistered", compacted=True),
    TopicSpec(PRESENCE, "PresenceChanged", compacted=True),
    TopicSpec(STATUS, "DeliveryStatus"),
    TopicSpec(ENGAGEMENT, "EngagementEvent"),
    TopicSpec(DLQ, "DeadLetter"),
) + tuple(TopicSpec(topic, "DeliveryJob") for topic in OUTBOX_TOPICS)

BY_NAME = {spec.name: spec for spec in TOPICS}


def default_partitions() -> int:
    return int(os.environ.get("NOTIFYFLOW_PARTITIONS", "4"))


def default_replication() -> int:
    """Copies of each partition: 1 on the local stack's single broker, 3 on a real cluster."""
    return int(os.environ.get("NOTIFYFLOW_REPLICATION_FACTOR", "1"))


def spec_for(topic: str) -> TopicSpec:
    try:
        return BY_NAME[topic]
    except KeyError:
        raise KeyError(f"unknown topic {topic!r}; known topics: {', '.join(BY_NAME)}") from None


# A Schema Registry that wants credentials or TLS: its settings from the environment, as Confluent's
# clients name them. SCHEMA_REGISTRY_USER and SCHEMA_REGISTRY_PASSWORD may stand for the user info.
REGISTRY_VARS = {"SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": "basic.auth.user.info",
                 "SCHEMA_REGISTRY_SSL_CA_LOCATION": "ssl.ca.location",
                 "SCHEMA_REGISTRY_SSL_CERTIFICATE_LOCATION": "ssl.certificate.location",
                 "SCHEMA_REGISTRY_SSL_KEY_LOCATION": "ssl.key.location",
                 "SCHEMA_REGISTRY_SSL_KEY_PASSWORD": "ssl.key.password"}


def registry_config(url: str, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    config = {"url": url, **{option: environ[name] for name, option in REGISTRY_VARS.items() if environ.get(name)}}
    if (user := environ.get("SCHEMA_REGISTRY_USER")) and "basic.auth.user.info" not in config:
        config["basic.auth.user.info"] = f"{user}:{environ.get('SCHEMA_REGISTRY_PASSWORD', '')}"
    return config


@functools.cache
def registry_client(url: str) -> SchemaRegistryClient:
    # One client per URL per process: it caches schema ids, and a mock:// registry lives in it.
    return SchemaRegistryClient.new_client(registry_config(url))


def codec_for(topic: str, schema_registry_url: str | None = None) -> AvroCodec:
    """The codec of a topic's values: Confluent framing with a registry, plain Avro without."""
    registry = registry_client(schema_registry_url) if schema_registry_url else None
    return AvroCodec(spec_for(topic).schema, registry=registry, topic=topic)
