"""Kafka clients configured the one way the project uses them.

Every client the project builds, bytewax's sources and sinks included, takes its librdkafka
properties from `client_config`: the defaults below, then `KAFKA_<PROPERTY>` for every client and
`KAFKA_PRODUCER_<PROPERTY>` / `KAFKA_CONSUMER_<PROPERTY>` for one kind (the property's dots as
underscores: `KAFKA_CONSUMER_FETCH_WAIT_MAX_MS=10` is `fetch.wait.max.ms=10`).
`KAFKA_BOOTSTRAP_SERVERS` is where the brokers are, as everywhere.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from typing import NamedTuple

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from kernel.topics import TOPICS, default_partitions, default_replication


# What decides latency and throughput, right for the embedded broker and for a real cluster.
DEFAULTS = {
    "producer": {
        # Java-compatible key hashing, so every client puts one user's records on one partition.
        "partitioner": "murmur2_random",
        "enable.idempotence": "true",
        # A record waits at most this long for others to share its request: the path to the screen
        # has two produce hops, and under load batches fill long before it.
        "linger.ms": "1",
    },
    "consumer": {
        # An idle fetch waits this long for data. A real broker answers as soon as data arrives; the
        # embedded one waits the whole time (measured: 500 ms, librdkafka's default, costs 128 ms a
        # hop at the median; 10 ms costs 2.8 ms), and the path to the screen has two hops.
        "fetch.wait.max.ms": "10",
    },
    "admin": {},
}
ROLES = tuple(DEFAULTS)
SERVICE_VARS = ("KAFKA_BOOTSTRAP_SERVERS",)


class Consumed(NamedTuple):
    """A consumed record as the flows' Kafka input hands it on (flows/kafka_input.py). A plain tuple:
    bytewax's KafkaSourceMessage is a frozen dataclass, and building one per record took 15-21 % of the
    analytics worker's time in py-spy profiles of bench.analytics (its Avro decode 22-27 %)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp: tuple[int, int] | None = None  # (type, epoch ms); type 0: the record has none


def client_config(role: str, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The librdkafka properties of a `role` client (producer, consumer or admin), without the brokers."""
    config = dict(DEFAULTS[role])
    for prefix in ("KAFKA_", f"KAFKA_{role.upper()}_"):
        for name, value in environ.items():
            rest = name[len(prefix):]
            if (name.startswith(prefix) and value and name not in SERVICE_VARS
                    and not rest.startswith(tuple(f"{r.upper()}_" for r in ROLES))):
                config[rest.lower().replace("_", ".")] = value
    return config


def producer(bootstrap_servers: str, **overrides) -> Producer:
    return Producer({**client_config("producer"), "bootstrap.servers": bootstrap_servers, **overrides})


def produce_all(client: Producer, topic: str, records: list[tuple[bytes | None, bytes]],
                timeout_s: float = 30.0) -> None:
    """Produce and wait for every acknowledgement; raise if any record was not accepted."""
    errors = []

    def on_delivery(error, _message):
        if error is not None:
            errors.append(error)

    for key, value in records:
        while True:
            try:
                client.produce(topic, key=key, value=value, on_delivery=on_delivery)
                break
            except BufferError:  # local queue full: let deliveries drain, then retry
                client.poll(0.1)
    remaining = client.flush(timeout_s)
    if remaining or errors:
        raise KafkaException(errors[0] if errors else f"{remaining} records to {topic} unacknowledged")


class TopicReader:
    """Reads topics from their beginning and keeps reading, without a consumer group.

    Partitions are assigned directly: reading starts at once and commits nothing. Callers
    find the end by silence or by what they expect, never by the broker's high watermark,
    which an embedded broker may report late.
    """

    def __init__(self, bootstrap_servers: str, topics: list[str]) -> None:
        self.consumer = Consumer({
            **client_config("consumer"),
            "bootstrap.servers": bootstrap_servers,
            "group.id": "notifyflow-reader",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        })
        partitions = []
        for topic in topics:
            metadata = self.consumer.list_topics(topic, timeout=10).topics[topic]
            if metadata.error is not None:
                raise KafkaException(metadata.error)
            partitions += [TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.partitions]
        self.consumer.assign(partitions)

    def poll(self, timeout_s: float, max_messages: int = 10_000) -> list[Message]:
        """What arrives within `timeout_s` (returns early once something has arrived)."""
        messages = self.consumer.consume(max_messages, timeout_s)
        for message in messages:
            if message.error() is not None:
                raise KafkaException(message.error())
        return messages

    def close(self) -> None:
        self.consumer.close()

    def __enter__(self) -> TopicReader:
        return self

    def __exit__(self, *_) -> None:
        self.close()


def read_topic(bootstrap_servers: str, topic: str | list[str], *, idle_timeout_s: float = 2.0,
               max_messages: int | None = None, deadline_s: float = 60.0) -> Iterator[Message]:
    """Every record of a topic (or of several, interleaved) from the beginning, until none arrives
    for `idle_timeout_s`."""
    with TopicReader(bootstrap_servers, [topic] if isinstance(topic, str) else topic) as reader:
        count, quiet_since, stop_at = 0, time.monotonic(), time.monotonic() + deadline_s
        while time.monotonic() - quiet_since < idle_timeout_s and time.monotonic() < stop_at:
            messages = reader.poll(0.2, max_messages=100 if max_messages is None else max_messages - count)
            if messages:
                quiet_since = time.monotonic()
            for message in messages:
                yield message
                count += 1
                if max_messages is not None and count >= max_messages:
                    return


def ensure_topics(bootstrap_servers: str, topics=TOPICS) -> list[str]:
    """Create the topics that do not exist yet; returns the names created."""
    admin = AdminClient({**client_config("admin"), "bootstrap.servers": bootstrap_servers})
    existing = set(admin.list_topics(timeout=10).topics)
    wanted = [
        NewTopic(spec.name, num_partitions=spec.partitions or default_partitions(),
                 replication_factor=default_replication(), config=spec.config())
        for spec in topics if spec.name not in existing
    ]
    if not wanted:
        return []
    created = []
    for name, future in admin.create_topics(wanted, operation_timeout=10).items():
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:  # another launcher won the race
                raise
    return created


def topic_partitions(bootstrap_servers: str) -> dict[str, int]:
    """Every topic the cluster has, with its number of partitions."""
    admin = AdminClient({**client_config("admin"), "bootstrap.servers": bootstrap_servers})
    return {name: len(meta.partitions) for name, meta in admin.list_topics(timeout=10).topics.items()}
