"""Bytewax glue the flows share: encoding to Kafka, the output sinks, keyed stateful steps, and
building a flow only when `bytewax.run` asks for it."""

from __future__ import annotations

import gc
import pickle
from collections.abc import Callable

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from connectors.kafka import client_config
from flows import metrics
from flows.kafka_input import SharedConsumerSource
from kernel.clock import utcnow
from kernel.keyed import KeyedStep
from kernel.records import Outgoing
from kernel.topics import codec_for


def kafka_source(brokers: list[str], topics: list[str], read_first: tuple[str, ...] = ()) -> SharedConsumerSource:
    """Reads the topics with the project's consumer settings (connectors/kafka.py client_config);
    `read_first` topics are read to their end before the others hand anything on (flows/kafka_input.py)."""
    return SharedConsumerSource(brokers, topics, client_config("consumer"), read_first)


def kafka_sink(brokers: list[str]) -> KafkaSink:
    """Writes each record to the topic it names, keyed by user like every other producer."""
    return KafkaSink(brokers, None, add_config=client_config("producer"))


class Encoder:
    """Every record a flow writes passes here, so the flows' metrics are counted here (flows.metrics);
    `lane` is the outbox lane a delivery flow reads."""

    def __init__(self, schema_registry_url: str | None, lane: str = "") -> None:
        self.registry_url, self.codecs, self.lane = schema_registry_url, {}, lane

    def __call__(self, record: Outgoing) -> KafkaSinkMessage:
        topic, key, value = record
        metrics.observe(topic, value, self.lane)
        if topic not in self.codecs:
            self.codecs[topic] = codec_for(topic, self.registry_url)
        return KafkaSinkMessage(key, self.codecs[topic].encode(value), topic=topic)


def keyed_steps(step_id: str, up: op.KeyedStream, step: KeyedStep) -> op.KeyedStream:
    return op.stateful_batch(step_id, up, lambda resume: KeyedLogic(step, resume))


class KeyedLogic(op.StatefulBatchLogic):
    """Runs a plain KeyedStep for one key; its state is snapshotted as pickled bytes (immutable)."""

    def __init__(self, step: KeyedStep, resume: bytes | None) -> None:
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


def settle_heap(young_objects: int = 100_000) -> None:
    """For a flow process, once its flow is built: what exists then (modules, templates, codecs)
    lives as long as the process, so the cyclic collector stops scanning it (gc.freeze), and it
    runs after `young_objects` new containers instead of 700. A flow allocates a few hundred
    short-lived, acyclic dicts per event, and at 700 most collections found nothing to free while
    the full ones rescanned every user's state: 20-25 % of the notification flow's CPU."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(young_objects, 20, 10)


def built_on_demand(build: Callable[[], Dataflow]) -> Callable[[str], Dataflow]:
    """A module `__getattr__` that builds `flow` from the environment only when `bytewax.run
    module:flow` asks for it, so importing the module needs no running services."""

    def module_getattr(name: str) -> Dataflow:
        if name == "flow":
            return build()
        raise AttributeError(name)

    return module_getattr
