"""Kafka topics as bytewax input, with one consumer per worker for all the partitions it reads.

bytewax's own KafkaSource builds a consumer per partition and waits up to 1 ms in each one that
has nothing: the notification flow reads six topics of four partitions, so a worker kept 24
consumers fetching on their own (each its own threads and fetch requests) and could spend 24 ms
in empty polls while a request waited in another partition. Here a worker's partitions share one
consumer, which fetches them all in one request per broker in the background; a partition takes
what has arrived without waiting, and one that came back empty is polled again after IDLE_POLL.

Records go on as connectors.kafka.Consumed tuples. Offsets are snapshotted per partition as
bytewax's source does (recovery resumes each partition at its own next offset), and the
per-partition consumer lag is published under bytewax's own metric, `bytewax_kafka_consumer_lag`.

Topics read first (`read_first`, the notification flow's user state) are read up to where they
ended when the worker started before the worker's other partitions hand anything on: nothing orders
two topics, and a flow starting on a backlog handed a user's first notifications on before that
user's phone was read from notify.devices, so they were never pushed (the soak lost 65 so). Those
other partitions are paused meanwhile, so their backlog waits in Kafka, not in memory. The order
holds within a worker (with several workers, a user's state may be another worker's partition).
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from datetime import UTC, datetime, timedelta

from bytewax.connectors.kafka import BYTEWAX_CONSUMER_LAG_GAUGE, KafkaSource
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from connectors.kafka import Consumed

log = logging.getLogger(__name__)

# Longer costs latency after a quiet spell; shorter costs CPU in a flow that is mostly idle.
IDLE_POLL = timedelta(milliseconds=2)
BATCH = 1000


class SharedConsumerSource(FixedPartitionedSource):
    def __init__(self, brokers: list[str], topics: list[str], config: dict[str, str],
                 read_first: tuple[str, ...] = ()) -> None:
        self.brokers, self.topics, self.config, self.read_first = brokers, topics, config, frozenset(read_first)
        self.consumers: dict[tuple[str, int], WorkerConsumer] = {}
        self.lock = threading.Lock()

    def list_parts(self) -> list[str]:
        return KafkaSource(self.brokers, self.topics, add_config=self.config).list_parts()

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> Partition:
        index, topic = for_part.split("-", 1)
        with self.lock:  # workers of one process build their partitions in their own threads
            key = (step_id, threading.get_ident())
            if key not in self.consumers:
                self.consumers[key] = WorkerConsumer(self.brokers, self.config, step_id, self.read_first)
            consumer = self.consumers[key]
        return consumer.add(topic, int(index), OFFSET_BEGINNING if resume_state is None else resume_state)


class WorkerConsumer:
    """One worker's consumer; what it fetches waits in the partition it belongs to."""

    def __init__(self, brokers: list[str], config: dict[str, str], step_id: str,
                 read_first: frozenset[str] = frozenset()) -> None:
        self.step_id, self.partitions, self.read_first = step_id, {}, read_first
        self.behind: dict[tuple[str, int], int] = {}  # read-first partition -> its end when the worker started
        self.paused: list[TopicPartition] = []
        self.consumer = Consumer({
            **config, "bootstrap.servers": ",".join(brokers),
            # Offsets live in bytewax's recovery store, not in a consumer group.
            "group.id": "BYTEWAX_IGNORED", "enable.auto.commit": "false", "enable.partition.eof": "false",
            "statistics.interval.ms": 1000, "stats_cb": self.publish_lag})

    def add(self, topic: str, index: int, offset: int) -> Partition:
        partition = Partition(self, topic, index, offset)
        self.partitions[(topic, index)] = partition
        self.consumer.incremental_assign([TopicPartition(topic, index, offset)])
        if topic in self.read_first:
            start, end = self.watermarks(topic, index)
            if max(offset, start) < end:
                self.behind[(topic, index)] = end
        elif self.read_first:  # let go once the read-first partitions have caught up (handed_on)
            self.paused.append(TopicPartition(topic, index))
            self.consumer.pause([self.paused[-1]])
        return partition

    def watermarks(self, topic: str, index: int) -> tuple[int, int]:
        """Where the partition's records start and end now."""
        try:
            return self.consumer.get_watermark_offsets(TopicPartition(topic, index), timeout=10, cached=False)
        except KafkaException as exc:
            log.warning("%s[%d]: no end offset (%s); not waiting for it before other topics", topic, index, exc)
            return 0, 0

    def holds(self, partition: Partition) -> bool:
        """Whether the partition must not hand anything on yet: read-first partitions are behind."""
        return bool(self.behind) and partition.topic not in self.read_first

    def handed_on(self, partition: Partition) -> None:
        key = (partition.topic, partition.index)
        # The consumer's position, not the last offset handed on: offsets at the end may hold no record.
        if key in self.behind and not partition.waiting and self.consumer.position(
                [TopicPartition(*key)])[0].offset >= self.behind[key]:
            del self.behind[key]
        if not self.behind and self.paused:
            self.consumer.resume(self.paused)
            self.paused = []

    def fetched(self) -> None:
        """Hand what has arrived to its partitions, without waiting."""
        for message in self.consumer.consume(BATCH, 0):
            if message.error() is not None:
                raise RuntimeError(f"error consuming from Kafka topic {message.topic()!r}: {message.error()}")
            self.partitions[(message.topic(), message.partition())].waiting.append(message)

    def publish_lag(self, stats: str) -> None:
        for topic, by_partition in json.loads(stats).get("topics", {}).items():
            for index, figures in by_partition.get("partitions", {}).items():
                partition = self.partitions.get((topic, int(index)))
                if partition is not None and partition.offset > 0 and figures.get("ls_offset", -1) >= 0:
                    BYTEWAX_CONSUMER_LAG_GAUGE.labels(step_id=self.step_id, topic=topic, partition=int(index)).set(
                        figures["ls_offset"] - partition.offset)

    def remove(self, partition: Partition) -> None:
        del self.partitions[(partition.topic, partition.index)]
        self.consumer.incremental_unassign([TopicPartition(partition.topic, partition.index)])
        if not self.partitions:
            self.consumer.close()


class Partition(StatefulSourcePartition):
    def __init__(self, worker: WorkerConsumer, topic: str, index: int, offset: int) -> None:
        self.worker, self.topic, self.index, self.offset = worker, topic, index, offset
        self.waiting: deque = deque()
        self.idle_until: datetime | None = None

    def next_batch(self) -> list[Consumed]:
        if not self.waiting:
            self.worker.fetched()
        if self.worker.holds(self):
            self.idle_until = datetime.now(UTC) + IDLE_POLL
            return []
        make = Consumed._make  # tuple.__new__: no Python frame per record
        batch = [make((m.topic(), m.partition(), m.offset(), m.key(), m.value(), m.timestamp())) for m in self.waiting]
        self.waiting.clear()
        if batch:
            self.offset = batch[-1].offset + 1  # resume after the last one handed on
        self.worker.handed_on(self)
        self.idle_until = None if batch else datetime.now(UTC) + IDLE_POLL
        return batch

    def next_awake(self) -> datetime | None:
        return self.idle_until

    def snapshot(self) -> int:
        return self.offset

    def close(self) -> None:
        self.worker.remove(self)
