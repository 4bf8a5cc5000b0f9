"""The email suppression list: addresses that hard-bounced are never written to again (mailbox
providers punish senders who keep writing to addresses that do not exist)."""

from __future__ import annotations

from typing import Protocol

from connectors import postgres
from connectors.threads import PerThread


class Suppressions(Protocol):
    def suppressed(self, addresses: set[str]) -> set[str]: ...
    def suppress(self, address: str, reason: str) -> None: ...


class PostgresSuppressions:
    """`email_suppressions`, one connection per worker thread, waiting out PostgreSQL restarts."""

    def __init__(self, database_url: str) -> None:
        self.connections = PerThread(lambda: postgres.Database(database_url))

    def suppressed(self, addresses: set[str]) -> set[str]:
        if not addresses:
            return set()
        rows = self.connections.get().execute("SELECT address FROM email_suppressions WHERE address = ANY(%s)",
                                              (sorted(addresses),))
        return {address for (address,) in rows}

    def suppress(self, address: str, reason: str) -> None:
        self.connections.get().execute("INSERT INTO email_suppressions (address, reason) VALUES (%s, %s) "
                                       "ON CONFLICT (address) DO NOTHING", (address, reason))


def normal(address: str) -> str:
    """The suppression key: mailbox providers treat addresses case-insensitively, so do we."""
    return address.strip().lower()
