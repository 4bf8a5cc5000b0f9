"""PostgreSQL access shared by flows, sinks and the gateway."""

from __future__ import annotations

import psycopg

from connectors.threads import PerThread


def connect(database_url: str) -> psycopg.Connection:
    return psycopg.connect(database_url, autocommit=True)


class AudienceMembers:
    """Looks up segment and topic members (`audience_members`), one query for many audiences.

    One connection per worker thread, made on first use.
    """

    def __init__(self, database_url: str) -> None:
        self.connections = PerThread(lambda: connect(database_url))

    def __call__(self, audiences: set[str]) -> dict[str, list[str]]:
        rows = self.connections.get().execute(
            "SELECT audience, user_id FROM audience_members WHERE audience = ANY(%s) ORDER BY audience, user_id",
            (sorted(audiences),)).fetchall()
        members: dict[str, list[str]] = {}
        for audience, user_id in rows:
            members.setdefault(audience, []).append(user_id)
        return members


class WebhookEndpoints:
    """The active webhook endpoint of each tenant, as {tenant: (url, secret)}."""

    def __init__(self, database_url: str) -> None:
        self.connections = PerThread(lambda: connect(database_url))

    def __call__(self, tenants: set[str]) -> dict[str, tuple[str, str]]:
        rows = self.connections.get().execute(
            "SELECT tenant, url, secret FROM webhook_endpoints WHERE active AND tenant = ANY(%s)",
            (sorted(tenants),)).fetchall()
        return {tenant: (url, secret) for tenant, url, secret in rows}
