"""What the embedded broker (Tansu, memory storage) costs per record, as its partitions fill.

    python -m bench.broker [--rate R] [--fills 0,20000,60000,120000]

On a machine where the broker shares the cores with the flows, its CPU is part of every figure the
other benchmarks print (bench.e2e shows it per process). Here a producer (linger 5 ms) and a
consumer (the project's consumer settings) move 300-byte records through one partition at R a
second for 5 s, after the partition has been filled with N records, for each N; the figure is the
broker's CPU (user + system, psutil) per record moved. Every record must arrive, or it fails.

Last line: us_per_record_<N>=<microseconds> for each N
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import psutil
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from rich.console import Console

from bench.cpu import cpu_seconds
from connectors.kafka import client_config
from notifyflow.stack import KafkaBroker

console = Console(stderr=True)
TOPIC, VALUE, SECONDS = "bench.broker", b"x" * 300, 5.0


def moved_cost(bootstrap: str, broker: psutil.Process, client: Producer, rate: int) -> float:
    """Broker CPU microseconds per record, moving rate * SECONDS records from the partition's end."""
    consumer = Consumer({**client_config("consumer"), "bootstrap.servers": bootstrap, "group.id": "bench.broker",
                         "enable.auto.commit": "false"})
    end = consumer.get_watermark_offsets(TopicPartition(TOPIC, 0), timeout=10)[1]
    consumer.assign([TopicPartition(TOPIC, 0, end)])
    total, got, stop = int(rate * SECONDS), [0], threading.Event()
    marked = f"{time.time_ns()}:".encode()  # the end offset may lag: count only this run's records
    value = (marked + VALUE)[:len(VALUE)]

    def consume() -> None:
        while not stop.is_set():
            got[0] += sum(1 for message in consumer.consume(500, 0.05)
                          if message.error() is None and message.value().startswith(marked))

    reader = threading.Thread(target=consume)
    reader.start()
    time.sleep(1)  # the consumer's first fetches are out
    before, started = cpu_seconds(broker), time.monotonic()
    for n in range(total):
        if (wait := started + n / rate - time.monotonic()) > 0:
            time.sleep(wait)
        client.produce(TOPIC, value=value)
        client.poll(0)
    client.flush(30)
    deadline = time.monotonic() + 30
    while got[0] < total and time.monotonic() < deadline:
        time.sleep(0.05)
    used = cpu_seconds(broker) - before
    stop.set()
    reader.join()
    consumer.close()
    if got[0] != total:
        raise SystemExit(f"{total - got[0]} of {total} records never arrived")
    return used / total * 1e6


def fill(client: Producer, records: int) -> None:
    for n in range(records):
        while True:
            try:
                client.produce(TOPIC, value=VALUE)
                break
            except BufferError:
                client.poll(0.05)
    if client.flush(60):
        raise SystemExit("the broker did not acknowledge the fill")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=int, default=500, help="records a second moved through the partition")
    parser.add_argument("--fills", default="0,20000,60000,120000", help="records in the partition before each run")
    args = parser.parse_args()
    fills = sorted(int(n) for n in args.fills.split(","))
    figures = []
    with tempfile.TemporaryDirectory(prefix="bench-broker-") as scratch:
        server = KafkaBroker()
        bootstrap = server.start(Path(scratch))
        try:
            admin = AdminClient({"bootstrap.servers": bootstrap})  # kept: the future needs its handle alive
            admin.create_topics([NewTopic(TOPIC, 1, 1)])[TOPIC].result()
            client = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
            held = 0
            for records in fills:
                fill(client, records - held)
                cost = moved_cost(bootstrap, psutil.Process(server.process.pid), client, args.rate)
                held = records + int(args.rate * SECONDS)
                console.print(f"{records:,} records in the partition: {cost:,.0f} us of broker CPU per record moved")
                figures.append(f"us_per_record_{records}={cost:.0f}")
        finally:
            server.stop()
    print(" ".join(figures))


if __name__ == "__main__":
    main()
