"""Kafka clients configured the one way the project uses them."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from kernel.topics import TOPICS, default_partitions, default_replication

# A secured cluster's settings come from the environment (in Kubernetes, the Secret); none set means
# plaintext, as the local stack's broker speaks. Every client the project makes applies them.
SECURITY_VARS = {"KAFKA_SECURITY_PROTOCOL": "security.protocol", "KAFKA_SASL_MECHANISM": "sasl.mechanism",
                 "KAFKA_SASL_USERNAME": "sasl.username", "KAFKA_SASL_PASSWORD": "sasl.password",
                 "KAFKA_SSL_CA_LOCATION": "ssl.ca.location",
                 "KAFKA_SSL_CERTIFICATE_LOCATION": "ssl.certificate.location",
                 "KAFKA_SSL_KEY_LOCATION": "ssl.key.location", "KAFKA_SSL_KEY_PASSWORD": "ssl.key.password"}


def security(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """librdkafka options for the credentials in the environment (KAFKA_SASL_USERNAME, ...)."""
    return {option: environ[name] for name, option in SECURITY_VARS.items() if environ.get(name)}


def producer(bootstrap_servers: str, **overrides) -> Producer:
    return Producer({
        "bootstrap.servers": bootstrap_servers,
        # Java-compatible key hashing, so every client puts one user's records on one partition.
        "partitioner": "murmur2_random",
        "enable.idempotence": True,
        "linger.ms": 5,
        **security(),
        **overrides,
    })


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
            "bootstrap.servers": bootstrap_servers,
            "group.id": "notifyflow-reader",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            **security(),
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
    admin = AdminClient({"bootstrap.servers": bootstrap_servers, **security()})
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
    admin = AdminClient({"bootstrap.servers": bootstrap_servers, **security()})
    return {name: len(meta.partitions) for name, meta in admin.list_topics(timeout=10).topics.items()}
