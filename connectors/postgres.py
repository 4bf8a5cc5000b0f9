"""PostgreSQL access shared by flows, sinks and the gateway."""

from __future__ import annotations

import psycopg


class AudienceMembers:
    """Looks up segment and topic members (`audience_members`), one query for many audiences.

    Connects on first use, so a dataflow can be built (and pickled) without a database.
    """

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._connection: psycopg.Connection | None = None

    def __call__(self, audiences: set[str]) -> dict[str, list[str]]:
        if self._connection is None or self._connection.closed:
            self._connection = psycopg.connect(self.database_url, autocommit=True)
        rows = self._connection.execute(
            "SELECT audience, user_id FROM audience_members WHERE audience = ANY(%s) ORDER BY audience, user_id",
            (sorted(audiences),)).fetchall()
        members: dict[str, list[str]] = {}
        for audience, user_id in rows:
            members.setdefault(audience, []).append(user_id)
        return members
