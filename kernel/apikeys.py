"""API keys of the HTTP front door: `nfk_<key id>_<secret>`. The id finds the key's row; only a
SHA-256 of the secret is stored. The secret is 32 random bytes, so a plain hash is enough: there is
nothing to guess that a slow hash would protect (unlike a password)."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

PREFIX = "nfk"
KEY = re.compile(rf"^{PREFIX}_([0-9a-f]{{16}})_([A-Za-z0-9_-]{{43}})$")


def new_key() -> tuple[str, str, str]:
    """(key id, the key to hand to the sender once, the digest to store)."""
    key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    return key_id, f"{PREFIX}_{key_id}_{secret}", digest(secret)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse(key: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed key, None otherwise."""
    match = KEY.match(key)
    return (match[1], match[2]) if match else None


def matches(secret: str, stored_digest: str) -> bool:
    return hmac.compare_digest(digest(secret), stored_digest)
