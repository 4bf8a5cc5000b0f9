"""`notifyflow setup` against servers it has never seen: a new PostgreSQL database on the stack's server,
a new ClickHouse directory and a broker of its own; then again, where it has nothing left to do."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid

import psycopg
import pytest

from connectors.kafka import topic_partitions
from kernel.topics import TOPICS
from notifyflow.migrate import MIGRATIONS
from notifyflow.stack import KafkaBroker


def notifyflow(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "notifyflow.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **env, "COLUMNS": "300"}, timeout=180)


@pytest.fixture
def fresh_servers(stack, tmp_path):
    """Servers nothing was set up on: (environment for the command, the new database's URL)."""
    name = f"setup_{uuid.uuid4().hex[:8]}"
    admin_url = stack.urls["DATABASE_URL"]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    broker = KafkaBroker()
    try:
        env = {"KAFKA_BOOTSTRAP_SERVERS": broker.start(tmp_path),
               "DATABASE_URL": admin_url.rsplit("/", 1)[0] + f"/{name}",
               "CLICKHOUSE_URL": f"chdb://{tmp_path / 'clickhouse'}", "NOTIFYFLOW_PARTITIONS": "2"}
        yield env
    finally:
        broker.stop()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def unwrapped(table: str) -> str:
    """The table's text without borders, on one line: a cell that wrapped (a list of migrations longer
    than the column is wide) reads as one again, the other cells of its continuation lines being empty."""
    return " ".join(re.sub(r"[│┃]", " ", table).split())


def test_setup_migrates_and_creates_topics_once_and_check_tells_what_is_missing(fresh_servers):
    postgres = sorted(path.stem for path in (MIGRATIONS / "postgres").glob("*.sql"))
    clickhouse = sorted(path.stem for path in (MIGRATIONS / "clickhouse").glob("*.sql"))

    before = notifyflow("setup", "--check", env=fresh_servers)
    assert before.returncode == 1, before.stderr
    assert f"missing: {', '.join(postgres)}" in unwrapped(before.stdout)
    assert f"missing: {', '.join(clickhouse)}" in unwrapped(before.stdout)
    assert "notify.events" in before.stdout

    first = notifyflow("setup", env=fresh_servers)
    assert first.returncode == 0, first.stderr
    assert f"applied {', '.join(postgres)}" in unwrapped(first.stdout)
    assert f"applied {', '.join(clickhouse)}" in unwrapped(first.stdout)
    assert f"created {len(TOPICS)} topics (2 partitions, replication 1)" in first.stdout
    partitions = topic_partitions(fresh_servers["KAFKA_BOOTSTRAP_SERVERS"])
    assert {spec.name: partitions[spec.name] for spec in TOPICS} == {spec.name: 2 for spec in TOPICS}
    with psycopg.connect(fresh_servers["DATABASE_URL"]) as conn:
        assert conn.execute("SELECT count(*) FROM notifications").fetchone() == (0,)

    again = notifyflow("setup", env=fresh_servers)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("up to date") == 2
    assert f"all {len(TOPICS)} topics exist" in again.stdout
    assert notifyflow("setup", "--check", env=fresh_servers).returncode == 0


def test_setup_reports_a_partition_count_that_differs_and_an_unreachable_server(fresh_servers):
    assert notifyflow("setup", env=fresh_servers).returncode == 0
    grown = notifyflow("setup", env={**fresh_servers, "NOTIFYFLOW_PARTITIONS": "8"})
    assert grown.returncode == 0, grown.stderr
    assert "notify.events has 2 partitions, NOTIFYFLOW_PARTITIONS=8" in grown.stdout

    down = notifyflow("setup", env={**fresh_servers, "DATABASE_URL": "postgresql://notify:hunter2@127.0.0.1:1/none"})
    assert down.returncode == 2
    assert "PostgreSQL at postgresql://notify:[redacted]@127.0.0.1:1/none" in down.stderr
    assert "hunter2" not in down.stderr + down.stdout
