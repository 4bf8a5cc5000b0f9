"""ClickHouse client: HTTP for a server URL, the in-process chDB engine for a chdb:/// URL."""

from __future__ import annotations

import clickhouse_connect


def client(clickhouse_url: str, *, readonly: bool = False):
    """`readonly` clients run reads (and per-query settings) only: analysts' SQL. The chDB clients of
    one process share its engine, so each thread may hold its own."""
    return clickhouse_connect.get_client(dsn=clickhouse_url, settings={"readonly": 2} if readonly else None)
