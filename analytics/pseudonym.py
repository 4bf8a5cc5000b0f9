"""Pseudonymous user keys: HMAC-SHA256 of the user (tenant and user id, kernel.requests.user_key)
under a key that rotates every period, so two tenants' `alice` are two people in analytics too.

Each period's key is derived from one master secret, so rows of different periods cannot be
linked by their user key alone, while erasure, which holds the secret, can still find a user's
rows under every key version within retention.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from datetime import datetime, timedelta
from pathlib import Path

from kernel.requests import DEFAULT_TENANT, user_key

RETENTION = timedelta(days=90)
REMEMBERED = 200_000  # pseudonyms kept per key version: a user's statuses and actions come close together


class UserKeys:
    def __init__(self, secret: bytes, rotation: timedelta = timedelta(days=30)) -> None:
        if len(secret) < 16:
            raise ValueError("ANALYTICS_SECRET must be at least 16 bytes")
        self.secret, self.period_s = secret, int(rotation.total_seconds())
        self._keys: dict[int, bytes] = {}
        self._pseudonyms: dict[int, dict[str, str]] = {}

    def version(self, at: datetime) -> int:
        return int(at.timestamp()) // self.period_s

    def _key(self, version: int) -> bytes:
        if version not in self._keys:
            self._keys[version] = hmac.new(self.secret, f"notifyflow user key v{version}".encode(),
                                           hashlib.sha256).digest()
        return self._keys[version]

    def pseudonym(self, user: str, version: int) -> str:
        """`user` is the user's key (a default-tenant user's is their id, so their pseudonyms did not change)."""
        remembered = self._pseudonyms.get(version)
        if remembered is None:
            remembered = self._pseudonyms[version] = {}
        found = remembered.get(user)
        if found is None:
            if len(remembered) >= REMEMBERED:
                remembered.clear()
            found = remembered[user] = hmac.digest(self._key(version), user.encode(), "sha256")[:16].hex()
        return found

    def of(self, user_id: str, at: datetime, tenant: str | None = DEFAULT_TENANT) -> tuple[int, str]:
        """(key version, user key) of the tenant's user's event at `at`."""
        version = self.version(at)
        return version, self.pseudonym(user_key(tenant, user_id), version)

    def of_millis(self, user_id: str, at_ms: int, tenant: str | None = DEFAULT_TENANT) -> tuple[int, str]:
        """of() for a time given as int milliseconds since the epoch (the same float seconds, truncated);
        called for every analytics row, so a remembered pseudonym is looked up here, without a call."""
        version, user = int(at_ms / 1000) // self.period_s, user_key(tenant, user_id)
        remembered = self._pseudonyms.get(version)
        found = remembered.get(user) if remembered is not None else None
        return version, found if found is not None else self.pseudonym(user, version)

    def every_version(self, user_id: str, now: datetime, tenant: str = DEFAULT_TENANT) -> list[tuple[int, str]]:
        """The user's keys in every period that can still hold rows (retention, plus a period of slack)."""
        first, last = self.version(now - RETENTION) - 1, self.version(now) + 1
        user = user_key(tenant, user_id)
        return [(version, self.pseudonym(user, version)) for version in range(first, last + 1)]


def from_env(environ=os.environ, home: Path | None = None) -> UserKeys:
    """ANALYTICS_SECRET (hex or text) and ANALYTICS_KEY_ROTATION_DAYS (default 30).

    Without a secret the first run generates one into <home>/analytics.secret (mode 0600), so the
    embedded default works out of the box and keeps its pseudonyms across restarts.
    """
    try:
        rotation = timedelta(days=float(environ.get("ANALYTICS_KEY_ROTATION_DAYS", "30")))
    except ValueError:
        raise ValueError("ANALYTICS_KEY_ROTATION_DAYS must be a number of days") from None
    if rotation <= timedelta(0):
        raise ValueError("ANALYTICS_KEY_ROTATION_DAYS must be positive")
    given = environ.get("ANALYTICS_SECRET")
    if given:
        return UserKeys(given.encode(), rotation)
    if home is None:
        from kernel.settings import home as default_home

        home = default_home()
    path = home / "analytics.secret"
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(32))
    return UserKeys(path.read_text().strip().encode(), rotation)
