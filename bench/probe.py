"""The notification flow as bench.flow runs it: `flows.notifications.build()` unchanged, with its
Kafka input and output wrapped so each worker notes two instants on the wall clock (time.time()),
the same clock bench.flow's ceiling loop reads:

- when its input first handed the flow a batch holding a notify.events record (`<pid>.first`);
- how many records of each topic its input has handed the flow (`<pid>.read`, topic and count a line);
- when the broker had acknowledged everything it had written so far (`<pid>-<worker>.acked`, with
  how many records that is). bytewax's KafkaSink flushes at the end of every batch it writes, so
  the end of a write is the acknowledgement of all of it.

    BENCH_PROBE_DIR=<dir> python -m bytewax.run bench.probe:flow -r <recovery dir> -s 5 -b 0

The wrappers only look at what passes; the Kafka clients are built by the flow's own kafka_source
and kafka_sink, with their configuration.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from flows import notifications
from flows.wiring import built_on_demand, kafka_sink, kafka_source
from kernel.topics import EVENTS


def probe_dir() -> Path:
    return Path(os.environ["BENCH_PROBE_DIR"])


def note(name: str, text: str) -> None:
    """Write a whole note at once (a reader never sees half of one)."""
    path = probe_dir() / name
    partial = path.with_name(f"{name}.{threading.get_ident()}.partial")
    partial.write_text(text)
    os.replace(partial, path)


class TimedSource(FixedPartitionedSource):
    def __init__(self, brokers, topics, read_first=()) -> None:
        self.inner = kafka_source(brokers, topics, read_first)

    def list_parts(self):
        return self.inner.list_parts()

    def build_part(self, step_id, for_part, resume_state):
        return TimedPartition(self.inner.build_part(step_id, for_part, resume_state), for_part.split("-", 1)[1])


class TimedPartition(StatefulSourcePartition):
    first_noted = False  # once per process
    read: dict[str, int] = {}  # topic -> records handed on, in this process

    def __init__(self, inner, topic: str) -> None:
        self.inner, self.topic = inner, topic

    def next_batch(self):
        batch = self.inner.next_batch()
        if batch:
            if self.topic == EVENTS and not TimedPartition.first_noted:
                TimedPartition.first_noted = True
                note(f"{os.getpid()}.first", repr(time.time()))
            TimedPartition.read[self.topic] = TimedPartition.read.get(self.topic, 0) + len(batch)
            note(f"{os.getpid()}.read", "".join(f"{topic} {n}\n" for topic, n in TimedPartition.read.items()))
        return batch

    def next_awake(self):
        return self.inner.next_awake()

    def snapshot(self):
        return self.inner.snapshot()

    def close(self) -> None:
        self.inner.close()


class TimedSink(DynamicSink):
    def __init__(self, brokers) -> None:
        self.inner = kafka_sink(brokers)

    def build(self, step_id: str, worker_index: int, worker_count: int):
        return TimedSinkPartition(self.inner.build(step_id, worker_index, worker_count), worker_index)


class TimedSinkPartition(StatelessSinkPartition):
    def __init__(self, inner, worker_index: int) -> None:
        self.inner, self.name, self.written = inner, f"{os.getpid()}-{worker_index}.acked", 0

    def write_batch(self, items) -> None:
        self.inner.write_batch(items)  # returns once the broker has acknowledged every record
        self.written += len(items)
        note(self.name, f"{time.time()!r} {self.written}")

    def close(self) -> None:
        self.inner.close()


def build():
    return notifications.build(source=TimedSource, sink=TimedSink)


__getattr__ = built_on_demand(build)
