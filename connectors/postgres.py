"""PostgreSQL access shared by flows, sinks and the gateway."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import psycopg

from connectors.outage import until_back
from connectors.threads import PerThread

T = TypeVar("T")


def connect(database_url: str) -> psycopg.Connection:
    return psycopg.connect(database_url, autocommit=True)


class Database:
    """One connection that survives PostgreSQL restarting or failing over: work that finds the
    server gone is run again, on a new connection once the old one is broken, until it succeeds.

    Work runs in autocommit or in its own transaction, so running it again after a failure repeats
    nothing that was committed (a failure in a transaction rolls it back). Given a `connection`
    instead of a URL, work runs on it once and errors reach the caller, as with a bare connection.
    """

    def __init__(self, database_url: str | None = None, connection: psycopg.Connection | None = None) -> None:
        self.url, self.connection = database_url, connection

    def run(self, work: Callable[[psycopg.Connection], T]) -> T:
        if self.url is None:
            return work(self.connection)
        return until_back(lambda: work(self.connect()), "PostgreSQL", on_error=self.drop_if_broken)

    def execute(self, query: str, params=()) -> list[tuple]:
        """The statement's rows ([] for one that returns none)."""
        def statement(connection: psycopg.Connection) -> list[tuple]:
            cursor = connection.execute(query, params)
            return cursor.fetchall() if cursor.description else []
        return self.run(statement)

    def connect(self) -> psycopg.Connection:
        if self.connection is None or self.connection.closed:
            self.connection = connect(self.url)
        return self.connection

    def drop_if_broken(self, _error: Exception) -> None:
        if self.connection is not None and (self.connection.broken or self.connection.closed):
            self.connection.close()
            self.connection = None

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()


class AudienceMembers:
    """Looks up segment and topic members (`audience_members`) of their tenants, one query for many audiences.

    One connection per worker thread, made on first use.
    """

    def __init__(self, database_url: str) -> None:
        self.connections = PerThread(lambda: Database(database_url))

    def __call__(self, audiences: set[tuple[str, str]]) -> dict[tuple[str, str], list[str]]:
        tenants, names = zip(*sorted(audiences)) if audiences else ((), ())
        rows = self.connections.get().execute(
            "SELECT m.tenant, m.audience, m.user_id FROM audience_members m"
            " JOIN unnest(%s::text[], %s::text[]) AS wanted(tenant, audience) USING (tenant, audience)"
            " ORDER BY m.tenant, m.audience, m.user_id", (list(tenants), list(names)))
        members: dict[tuple[str, str], list[str]] = {}
        for tenant, audience, user_id in rows:
            members.setdefault((tenant, audience), []).append(user_id)
        return members


class WebhookEndpoints:
    """The active webhook endpoint of each tenant, as {tenant: (url, secret)}."""

    def __init__(self, database_url: str) -> None:
        self.connections = PerThread(lambda: Database(database_url))

    def __call__(self, tenants: set[str]) -> dict[str, tuple[str, str]]:
        rows = self.connections.get().execute(
            "SELECT tenant, url, secret FROM webhook_endpoints WHERE active AND tenant = ANY(%s)",
            (sorted(tenants),))
        return {tenant: (url, secret) for tenant, url, secret in rows}
