"""Apply the SQL migrations under infra/migrations/ once each, in order.

Each engine records what it applied in its own `schema_migrations` table, so running
the migrations again is a no-op and a half-finished run picks up where it stopped.
"""

from __future__ import annotations

from pathlib import Path

import psycopg

import infra
from connectors import clickhouse

MIGRATIONS = Path(infra.__file__).parent / "migrations"
CLICKHOUSE_DATABASE = "notifyflow"
# Any constant works; it only has to be the same for every launcher migrating the database.
_PG_LOCK_ID = 0x6E6F7469


def pending(engine: str, applied: set[str]) -> list[Path]:
    return [path for path in sorted((MIGRATIONS / engine).glob("*.sql")) if path.stem not in applied]


def migrate_postgres(database_url: str) -> list[str]:
    done = []
    with psycopg.connect(database_url) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_PG_LOCK_ID,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        conn.commit()
        applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        for path in pending("postgres", applied):
            with conn.transaction():
                conn.execute(path.read_text())
                conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (path.stem,))
            done.append(path.stem)
        conn.execute("SELECT pg_advisory_unlock(%s)", (_PG_LOCK_ID,))
    return done


def statements(sql: str) -> list[str]:
    return [stmt.strip() for stmt in sql.split(";\n") if stmt.strip().rstrip(";").strip()]


def migrate_clickhouse(clickhouse_url: str) -> list[str]:
    client = clickhouse.client(clickhouse_url)
    try:
        client.command(f"CREATE DATABASE IF NOT EXISTS {CLICKHOUSE_DATABASE}")
        client.command(
            f"CREATE TABLE IF NOT EXISTS {CLICKHOUSE_DATABASE}.schema_migrations "
            "(version String, applied_at DateTime DEFAULT now()) ENGINE = MergeTree ORDER BY version"
        )
        applied = {row[0] for row in client.query(
            f"SELECT version FROM {CLICKHOUSE_DATABASE}.schema_migrations").result_rows}
        done = []
        for path in pending("clickhouse", applied):
            for stmt in statements(path.read_text()):
                client.command(stmt.rstrip(";"))
            client.insert(f"{CLICKHOUSE_DATABASE}.schema_migrations", [[path.stem]], column_names=["version"])
            done.append(path.stem)
        return done
    finally:
        client.close()
