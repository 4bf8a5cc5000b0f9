"""`notifyflow setup`: make the servers the environment names ready for the flows and the gateway:
PostgreSQL migrations, ClickHouse DDL, Kafka topics. Run once per release (the Kubernetes Job, the
compose `setup` service); running it again changes nothing. `--check` changes nothing either and
exits 1 while something is missing, so a flow can wait for a release's migrations before it starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

import psycopg
import typer
from rich.markup import escape
from rich.table import Table

from connectors import clickhouse
from connectors.kafka import ensure_topics, topic_partitions
from kernel import logs, settings
from kernel.topics import TOPICS, default_partitions, default_replication
from notifyflow import migrate
from notifyflow.console import console


class SetupError(RuntimeError):
    """A server could not be reached or refused a step; the message says which."""


@dataclass
class Step:
    server: str
    url: str
    done: list[str] = field(default_factory=list)      # what this run applied or created
    missing: list[str] = field(default_factory=list)   # what a --check found not there yet
    notes: list[str] = field(default_factory=list)


def postgres_pending(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        if conn.execute("SELECT to_regclass('schema_migrations')").fetchone()[0] is None:
            return [path.stem for path in migrate.pending("postgres", set())]
        applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    return [path.stem for path in migrate.pending("postgres", applied)]


def clickhouse_pending(url: str) -> list[str]:
    client = clickhouse.client(url)
    try:
        table = f"{migrate.CLICKHOUSE_DATABASE}.schema_migrations"
        applied = ({row[0] for row in client.query(f"SELECT version FROM {table}").result_rows}
                   if client.command(f"EXISTS TABLE {table}") else set())
    finally:
        client.close()
    return [path.stem for path in migrate.pending("clickhouse", applied)]


def kafka_step(url: str, check: bool) -> Step:
    step, found = Step("Kafka", url), topic_partitions(url)
    step.missing = [spec.name for spec in TOPICS if spec.name not in found]
    if not check:
        step.done, step.missing = ensure_topics(url), []
    # Partitions are never added here: more partitions move users' keys to other partitions (see the
    # runbook), so a count that differs from NOTIFYFLOW_PARTITIONS is reported, not changed.
    step.notes = [f"{name} has {found[name]} partitions, NOTIFYFLOW_PARTITIONS={default_partitions()}"
                  for name in sorted(found) if name in {s.name for s in TOPICS} and found[name] != default_partitions()]
    return step


def run(config: settings.Settings, check: bool = False) -> list[Step]:
    steps = []
    for server, url, pending, apply in (
            ("PostgreSQL", config.database_url, postgres_pending, migrate.migrate_postgres),
            ("ClickHouse", config.clickhouse_url, clickhouse_pending, migrate.migrate_clickhouse)):
        try:
            step = Step(server, url, missing=pending(url))
            if not check and step.missing:
                step.done, step.missing = apply(url), []
        except Exception as exc:  # any failure to reach or migrate the server stops the release here
            raise SetupError(f"{server} at {logs.redact(url)}: {exc}") from exc
        steps.append(step)
    try:
        steps.append(kafka_step(config.kafka_bootstrap_servers, check))
    except Exception as exc:
        raise SetupError(f"Kafka at {config.kafka_bootstrap_servers}: {exc}") from exc
    return steps


def summary(step: Step) -> str:
    if step.missing:
        return f"missing: {', '.join(step.missing)}"
    if step.server == "Kafka":
        made = (f"created {len(step.done)} topics ({default_partitions()} partitions, replication "
                f"{default_replication()})" if step.done else f"all {len(TOPICS)} topics exist")
        return "; ".join([made, *step.notes])
    return f"applied {', '.join(step.done)}" if step.done else "up to date"


def setup(check: Annotated[bool, typer.Option("--check", help="Change nothing; exit 1 while a migration "
                                                               "or a topic is missing.")] = False) -> None:
    """Apply the PostgreSQL migrations and ClickHouse DDL and create the Kafka topics, on the servers the
    environment names (KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL, CLICKHOUSE_URL); idempotent."""
    steps = run(settings.load(), check)
    table = Table("server", "at", "checked" if check else "done", title="notifyflow setup")
    for step in steps:
        table.add_row(step.server, escape(logs.redact(step.url)), escape(summary(step)))
    console.print(table)
    if any(step.missing for step in steps):
        raise typer.Exit(1)
