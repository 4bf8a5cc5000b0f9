"""ClickHouse client: HTTP for a server URL, the in-process chDB engine for a chdb:/// URL."""

from __future__ import annotations

import clickhouse_connect


def client(clickhouse_url: str):
    return clickhouse_connect.get_client(dsn=clickhouse_url)
