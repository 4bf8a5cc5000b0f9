"""PostgreSQL access shared by flows, sinks and the gateway."""

from __future__ import annotations

import psycopg

from connectors.threads import PerThread


def connect(database_url: str) -> psycopg.Connection:
    return psycopg.connect(database_url, autocommit=True)


class AudienceMembers:
    """Looks up segment and topic members (`audience_members`) of their tenants, one query for many audiences.

    One connection per worker thread, made on first use.
    """

    def __init__(self, database_url: str) -> None:
        self.connections = PerThread(lambda: connect(database_url))

    def __call__(self, audiences: set[tuple[str, str]]) -> dict[tuple[str, str], list[str]]:
        tenants, names = zip(*sorted(audiences)) if audiences else ((), ())
        rows = self.connections.get().execute(
            "SELECT m.tenant, m.audience, m.user_id FROM audience_members m"
            " JOIN unnest(%s::text[], %s::text[]) AS wanted(tenant, audience) USING (tenant, audience)"
            " ORDER BY m.tenant, m.audience, m.user_id", (list(tenants), list(names))).fetchall()
        members: dict[tuple[str, str], list[str]] = {}
        for tenant, audience, user_id in rows:
            members.setdefault((tenant, audience), []).append(user_id)
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
