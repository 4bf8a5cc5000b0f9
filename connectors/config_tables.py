"""Configuration kept in PostgreSQL that running processes follow without a restart: sender grants
(`sender_grants`) and tenants' category policies (`category_policies`).

Both tables are small, so a process reads each whole and reads it again once it is `ttl_s` old
(NOTIFYFLOW_CONFIG_TTL_S, default 5): a change made with the CLI reaches every running flow within
that time. When PostgreSQL cannot be reached at a refresh, the last copy read stays in use (and
the refresh is tried again on the next lookup after a second); a process that never read one fails.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

import psycopg
from psycopg.types.json import Jsonb

from connectors.postgres import connect
from connectors.threads import PerThread
from kernel.grants import Grant
from kernel.policy import CategoryPolicy, with_settings

T = TypeVar("T")
log = logging.getLogger(__name__)
RETRY_S = 1.0


def ttl_from_env() -> float:
    return float(os.environ.get("NOTIFYFLOW_CONFIG_TTL_S", "5"))


class Refreshed(Generic[T]):
    """`read(connection)` once, then again whenever the copy is older than `ttl_s`."""

    def __init__(self, database_url: str, read: Callable[[psycopg.Connection], T], ttl_s: float | None = None) -> None:
        self.connections = PerThread(lambda: connect(database_url))
        self.read, self.ttl_s = read, ttl_from_env() if ttl_s is None else ttl_s
        self.value: T | None = None
        self.fresh_until = 0.0
        self.lock = threading.Lock()

    def __call__(self) -> T:
        if time.monotonic() < self.fresh_until and self.value is not None:
            return self.value
        with self.lock:  # one refresh at a time; the others use what it read
            if time.monotonic() >= self.fresh_until or self.value is None:
                self.refresh()
        return self.value

    def refresh(self) -> None:
        try:
            self.value, self.fresh_until = self.read(self.connections.get()), time.monotonic() + self.ttl_s
        except psycopg.Error as exc:
            if self.value is None:
                raise
            log.warning("keeping the configuration read before: %s", exc)
            self.connections = PerThread(self.connections.factory)  # a new connection next time
            self.fresh_until = time.monotonic() + RETRY_S


# --- sender grants ---------------------------------------------------------------------------------

GRANT_COLUMNS = "tenant, source_app, categories, max_priority, audiences, per_minute"


def read_grants(db: psycopg.Connection) -> dict[tuple[str, str], Grant]:
    rows = db.execute(f"SELECT {GRANT_COLUMNS} FROM sender_grants").fetchall()
    return {(row[0], row[1]): grant_of(row) for row in rows}


def grant_of(row) -> Grant:
    tenant, source_app, categories, max_priority, audiences, per_minute = row
    return Grant(tenant, source_app, tuple(categories) if categories is not None else None, max_priority,
                 tuple(audiences), per_minute)


def sender_grants(database_url: str, ttl_s: float | None = None) -> Refreshed[dict[tuple[str, str], Grant]]:
    return Refreshed(database_url, read_grants, ttl_s)


def save_grant(db: psycopg.Connection, grant: Grant) -> None:
    """Give the sender this grant in the tenant, replacing the one it had."""
    db.execute(f"INSERT INTO sender_grants ({GRANT_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s) "
               "ON CONFLICT (tenant, source_app) DO UPDATE SET categories = EXCLUDED.categories, "
               "max_priority = EXCLUDED.max_priority, audiences = EXCLUDED.audiences, "
               "per_minute = EXCLUDED.per_minute, granted_at = now()", grant_row(grant))


def grant_row(grant: Grant) -> tuple:
    return (grant.tenant, grant.source_app, list(grant.categories) if grant.categories is not None else None,
            grant.max_priority, list(grant.audiences), grant.per_minute)


def add_grants(db: psycopg.Connection, grants) -> None:
    """Grants for senders that have none; a grant already there is left as it is."""
    for grant in grants:
        db.execute(f"INSERT INTO sender_grants ({GRANT_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s) "
                   "ON CONFLICT (tenant, source_app) DO NOTHING", grant_row(grant))


def revoke_grant(db: psycopg.Connection, tenant: str, source_app: str) -> bool:
    return db.execute("DELETE FROM sender_grants WHERE tenant = %s AND source_app = %s",
                      (tenant, source_app)).rowcount > 0


# --- category policies -----------------------------------------------------------------------------

def read_policy_settings(db: psycopg.Connection) -> dict[tuple[str, str], dict]:
    """What each tenant set per category, as it set it."""
    rows = db.execute("SELECT tenant, category, settings FROM category_policies").fetchall()
    return {(tenant, category): settings for tenant, category, settings in rows}


def read_policies(db: psycopg.Connection) -> dict[tuple[str, str], CategoryPolicy]:
    policies = {}
    for (tenant, category), settings in read_policy_settings(db).items():
        try:
            policies[tenant, category] = with_settings(category, settings)
        except ValueError as exc:  # written around the CLI: the built-in policy, and say so
            log.warning("ignoring the %s policy of tenant %s: %s", category, tenant, exc)
    return policies


def category_policies(database_url: str, ttl_s: float | None = None) -> Refreshed[dict]:
    return Refreshed(database_url, read_policies, ttl_s)


def save_policy(db: psycopg.Connection, tenant: str, category: str, settings: dict) -> CategoryPolicy:
    """Merge `settings` into what the tenant set for the category; the policy that results."""
    row = db.execute("SELECT settings FROM category_policies WHERE tenant = %s AND category = %s",
                     (tenant, category)).fetchone()
    merged = {**(row[0] if row else {}), **settings}
    policy = with_settings(category, merged)  # refuse before storing
    db.execute("INSERT INTO category_policies (tenant, category, settings) VALUES (%s, %s, %s) "
               "ON CONFLICT (tenant, category) DO UPDATE SET settings = EXCLUDED.settings, updated_at = now()",
               (tenant, category, Jsonb(merged)))
    return policy


def reset_policy(db: psycopg.Connection, tenant: str, category: str) -> bool:
    """Back to the built-in policy."""
    return db.execute("DELETE FROM category_policies WHERE tenant = %s AND category = %s",
                      (tenant, category)).rowcount > 0
