"""Dead letters for on-call: read them, select some, and replay them to their source topic after a fix.

A replay re-publishes the original key and bytes to the topic they were first read from, so the
flow that rejected them reads them again. Each dead letter is replayed at most once: its source
(topic, partition, offset) is recorded in PostgreSQL (`dlq_replays`) in the same transaction that
waits for the broker's acknowledgements, so a replay that fails records nothing and a second
replay of the same selection publishes nothing. (A failure after the broker took part of a topic's
records leaves those to be sent again by the next replay: the flows drop such copies by request id
or delivery claim.)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg

from connectors import postgres
from connectors.kafka import produce_all, producer, read_topic
from kernel.settings import Settings
from kernel.topics import BY_NAME, DLQ, codec_for, spec_for


class SelectionError(ValueError):
    """The selection is unusable; the message says why."""


@dataclass(frozen=True)
class Selection:
    stage: str | None = None
    reason: str | None = None  # a part of the reason, as `notifyflow dlq` lists it
    topic: str | None = None  # the source topic
    since: datetime | None = None  # on last_seen
    until: datetime | None = None

    def __post_init__(self) -> None:
        if self.stage is None and self.reason is None:
            raise SelectionError("choose dead letters by --stage and/or --reason")
        if self.topic is not None:
            spec_for(self.topic)  # KeyError naming the known topics
        if self.since and self.until and self.since >= self.until:
            raise SelectionError(f"--since {self.since.isoformat()} is not before --until {self.until.isoformat()}")

    def check_stage(self, letters: list[dict]) -> None:
        """A stage no dead letter has is a typo, not an empty selection."""
        stages = sorted({letter["stage"] for letter in letters})
        if self.stage is not None and self.stage not in stages:
            raise SelectionError(f"no dead letters at stage {self.stage!r}; stages: {', '.join(stages) or 'none'}")

    def matches(self, letter: dict) -> bool:
        return ((self.stage is None or letter["stage"] == self.stage)
                and (self.reason is None or self.reason in letter["reason"])
                and (self.topic is None or letter["topic"] == self.topic)
                and (self.since is None or letter["last_seen"] >= self.since)
                and (self.until is None or letter["last_seen"] < self.until))


def source(letter: dict) -> tuple[str, int, int]:
    return letter["topic"], letter["partition"], letter["offset"]


def select(letters: list[dict], selection: Selection) -> list[dict]:
    """The matching dead letters in the order they were written, one per source record (a flow that
    resumed from a snapshot may have dead-lettered the same record twice)."""
    chosen: dict[tuple[str, int, int], dict] = {}
    for letter in letters:
        if selection.matches(letter):
            chosen.setdefault(source(letter), letter)
    return list(chosen.values())


def replayable(letter: dict) -> bool:
    """Only records of topics kept by time are replayed. A record replayed to a compacted topic would
    become the latest state of its user, over newer preferences or devices, or over an erasure tombstone."""
    spec = BY_NAME.get(letter["topic"])
    return spec is not None and not spec.compacted


def read(config: Settings, idle_timeout_s: float) -> list[dict]:
    codec = codec_for(DLQ, config.schema_registry_url)
    return [codec.decode(message.value())
            for message in read_topic(config.kafka_bootstrap_servers, DLQ, idle_timeout_s=idle_timeout_s,
                                      deadline_s=600)]


def columns(letters: list[dict]) -> list[list]:
    """The letters' sources as arrays (topics, partitions, offsets), for unnest()."""
    return [[letter[name] for letter in letters] for name in ("topic", "partition", "offset")]


def replayed(config: Settings, letters: list[dict]) -> set[tuple[str, int, int]]:
    """The sources among `letters` replayed before."""
    with postgres.connect(config.database_url) as db:
        return {tuple(row) for row in db.execute(
            'SELECT topic, partition, "offset" FROM dlq_replays WHERE (topic, partition, "offset") IN '
            "(SELECT * FROM unnest(%s::text[], %s::integer[], %s::bigint[]))", columns(letters)).fetchall()}


LEDGER_INSERT = """
INSERT INTO dlq_replays (topic, partition, "offset", stage)
SELECT * FROM unnest(%s::text[], %s::integer[], %s::bigint[], %s::text[])
ON CONFLICT DO NOTHING
RETURNING topic, partition, "offset"
"""


def replay(config: Settings, letters: list[dict], *, dry_run: bool = False) -> dict[str, int]:
    """Publish each letter not replayed before to its source topic, one transaction per topic (a
    failure on one topic leaves the others replayed). Returns how many went (with `dry_run`: would go)
    to each topic; the rest of `letters` had been replayed before."""
    by_topic: dict[str, list[dict]] = {}
    for letter in letters:
        by_topic.setdefault(letter["topic"], []).append(letter)
    counts = {}
    client = producer(config.kafka_bootstrap_servers)
    with postgres.connect(config.database_url) as db:
        for topic, group in by_topic.items():
            with db.transaction():
                fresh = {tuple(row) for row in db.execute(
                    LEDGER_INSERT, [*columns(group), [letter["stage"] for letter in group]]).fetchall()}
                records = [(letter["original_key"], letter["original"]) for letter in group if source(letter) in fresh]
                counts[topic] = len(records)
                if dry_run:
                    raise psycopg.Rollback()  # ends this transaction, recording nothing
                produce_all(client, topic, records)
    return counts
