"""PostgreSQL access shared by flows, sinks and the gateway."""

from __future__ import annotations

import threading

import psycopg


class AudienceMembers:
    """Looks up segment and topic members (`audience_members`), one query for many audiences.

    Connects on first use, so a dataflow can be built without a database; one connection per
    thread, because bytewax workers of one process are threads and a connection is not shareable.
    """

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._local = threading.local()

    def __call__(self, audiences: set[str]) -> dict[str, list[str]]:
        connection = getattr(self._local, "connection", None)
        if connection is None or connection.closed:
            connection = self._local.connection = psycopg.connect(self.database_url, autocommit=True)
        rows = connection.execute(
            "SELECT audience, user_id FROM audience_members WHERE audience = ANY(%s) ORDER BY audience, user_id",
            (sorted(audiences),)).fetchall()
        members: dict[str, list[str]] = {}
        for audience, user_id in rows:
            members.setdefault(audience, []).append(user_id)
        return members
