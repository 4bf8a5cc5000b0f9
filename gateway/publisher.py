"""What the gateway tells the flows: preferences, devices, presence and engagement, as Avro
records on their topics, keyed by user (kernel.requests.routing_key) like every other producer."""

from __future__ import annotations

from connectors.kafka import producer
from kernel.requests import routing_key
from kernel.topics import codec_for


class Publisher:
    def __init__(self, bootstrap_servers: str, schema_registry_url: str | None = None) -> None:
        self.producer = producer(bootstrap_servers)
        self.registry_url = schema_registry_url
        self.codecs: dict = {}

    def codec(self, topic: str):
        if topic not in self.codecs:
            self.codecs[topic] = codec_for(topic, self.registry_url)
        return self.codecs[topic]

    def validated(self, topic: str, record: dict) -> dict:
        """The record as its readers will decode it (defaults filled in); raises CodecError with the
        reason for a bad one."""
        codec = self.codec(topic)
        return codec.decode(codec.encode(record))

    def publish(self, topic: str, record: dict) -> None:
        """Encode (raising CodecError with the reason for a bad record) and hand to the producer;
        delivery happens in the background, and `close` waits for what is still queued."""
        value = self.codec(topic).encode(record)
        self.producer.produce(topic, key=routing_key(record), value=value)
        self.producer.poll(0)

    def close(self) -> None:
        self.producer.flush(10)
