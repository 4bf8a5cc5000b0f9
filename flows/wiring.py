"""Bytewax glue the flows share: encoding to Kafka, the output sinks, per-user stateful steps."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from flows.steps import UserStep
from infra.topics import codec_for


def kafka_sink(brokers: list[str]) -> KafkaSink:
    """Writes each record to the topic it names, keyed by user like every other producer."""
    return KafkaSink(brokers, None, add_config={
        "partitioner": "murmur2_random", "enable.idempotence": "true", "linger.ms": "5"})


def utcnow() -> datetime:
    return datetime.now(UTC)


class Encoder:
    def __init__(self, schema_registry_url: str | None) -> None:
        self.registry_url, self.codecs = schema_registry_url, {}

    def __call__(self, record: tuple[str, bytes | None, dict]) -> KafkaSinkMessage:
        topic, key, value = record
        if topic not in self.codecs:
            self.codecs[topic] = codec_for(topic, self.registry_url)
        return KafkaSinkMessage(key, self.codecs[topic].encode(value), topic=topic)


def per_user_steps(step_id: str, up: op.KeyedStream, step: UserStep) -> op.KeyedStream:
    return op.stateful_batch(step_id, up, lambda resume: PerUserLogic(step, resume))


class PerUserLogic(op.StatefulBatchLogic):
    """Runs a plain UserStep for one user; its state is snapshotted as pickled bytes (immutable)."""

    def __init__(self, step: UserStep, resume: bytes | None) -> None:
        self.step = step
        self.state = pickle.loads(resume) if resume is not None else step.new_state()

    def on_batch(self, values):
        return self.step.process(self.state, values, utcnow()), self.keep()

    def on_notify(self):
        return self.step.release(self.state, utcnow()), self.keep()

    def notify_at(self):
        return self.step.due(self.state)

    def snapshot(self) -> bytes:
        return pickle.dumps(self.state, protocol=pickle.HIGHEST_PROTOCOL)

    def keep(self) -> bool:
        return self.DISCARD if self.step.is_empty(self.state) else self.RETAIN



class ClickHouseSink(DynamicSink):
    """Hands each worker's batches of collected items to a writer built in that worker's thread
    (`make_writer()`, e.g. analytics.store.RawEvents over its own client)."""

    def __init__(self, make_writer) -> None:
        self.make_writer = make_writer

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _WriterPartition:
        return _WriterPartition(self.make_writer())


class _WriterPartition(StatelessSinkPartition):
    def __init__(self, writer) -> None:
        self.writer = writer

    def write_batch(self, batches: list[list[dict]]) -> None:
        self.writer.write(item for batch in batches for item in batch)
