"""Time as every process reads it: aware UTC datetimes, and ISO-8601 text turned into them."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def parse_time(value):
    """An ISO-8601 string as an aware datetime (UTC when it names no zone); anything else as it is."""
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return value
