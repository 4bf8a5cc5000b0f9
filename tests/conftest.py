"""The local stack for the whole test session, started once, from the same launcher `notifyflow stack up` uses.

Where the environment already names a service (KAFKA_BOOTSTRAP_SERVERS, ...), that one is used instead.
"""

from __future__ import annotations

import os

import pytest

from kernel.settings import SERVICE_VARS
from notifyflow.stack import OPEN_GRANTS, LocalStack

from gateway_harness import serve_gateway


@pytest.fixture(scope="session")
def stack():
    with LocalStack(grants=OPEN_GRANTS) as running:
        saved = {name: os.environ.get(name) for name in SERVICE_VARS}
        os.environ.update(running.urls)
        try:
            yield running
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


@pytest.fixture
def chdb_client(tmp_path):
    """A client of the in-process ClickHouse engine (chDB) over a fresh, migrated data directory."""
    from connectors import clickhouse
    from notifyflow.migrate import migrate_clickhouse

    url = f"chdb://{tmp_path / 'clickhouse'}"
    migrate_clickhouse(url)
    opened = clickhouse.client(url)
    yield opened
    opened.close()


@pytest.fixture(scope="session")
def gateway(stack):
    """The gateway (with its demo token endpoint and the web client) served by uvicorn on loopback."""
    with serve_gateway(stack.urls) as url:
        yield url
