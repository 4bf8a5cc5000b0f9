"""Build the records people publish (notification requests, preferences, devices) from what they
type or write in a JSON file: defaults filled in, ISO-8601 strings turned into datetimes."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

from kernel.clock import parse_time
from kernel.topics import CHANNELS

# Fields of NotificationRequested that are timestamps, as paths into the record.
TIMESTAMP_PATHS = (("metadata", "created_at"), ("metadata", "expires_at"), ("scheduled_at",))
# Where a request, a preference or a device without a tenant belongs: a single-tenant deployment's.
DEFAULT_TENANT = "default"
# A tenant prefixes its users' keys (`tenant:user`), Redis claims and channels, and '*' stands for every
# tenant in sender grants: so a tenant is a plain name, without ':', '*', spaces or anything a URL escapes.
TENANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
MAX_TENANT = 128


def notification_request(*, user_id: str | None = None, title: str, body: str,
                         category: str = "general", priority: str = "normal", type: str = "info",
                         source_app: str = "cli", tenant: str | None = None, **extra) -> dict:
    """A complete request with a fresh id and creation time; `extra` overrides any top-level field."""
    record = {
        "id": str(uuid.uuid4()),
        "user_id": user_id,
        "type": type,
        "category": category,
        "priority": priority,
        "content": {"title": title, "body": body},
        "metadata": {"created_at": datetime.now(UTC), "source_app": source_app},
        "tenant": tenant or DEFAULT_TENANT,
    }
    record.update(extra)
    return from_json(record)


def from_json(record: dict) -> dict:
    """Fill in id and created_at when missing and turn ISO-8601 strings into datetimes."""
    record = {**record, "metadata": dict(record.get("metadata") or {})}
    record.setdefault("id", str(uuid.uuid4()))
    record["metadata"].setdefault("created_at", datetime.now(UTC))
    for path in TIMESTAMP_PATHS:
        holder = record
        for name in path[:-1]:
            holder = holder.get(name) or {}
        if holder.get(path[-1]) is not None:
            holder[path[-1]] = parse_time(holder[path[-1]])
    return record


def user_key(tenant: str | None, user_id: str) -> str:
    """The one name of a user, whose identity is (tenant, user id): flow keys, Kafka keys, Redis channels
    and claims, analytics pseudonyms. A default-tenant user keeps their bare id (so a single-tenant
    deployment keeps every key, partition, compacted record and recovered state it had); any other is
    `tenant:user`. Tenants never contain ':' (tenant_problem), and a default-tenant id that does is
    written `default:id`, so no two users share a key."""
    tenant = tenant or DEFAULT_TENANT
    return user_id if tenant == DEFAULT_TENANT and ":" not in user_id else f"{tenant}:{user_id}"


def tenant_problem(tenant: object) -> str | None:
    """Why `tenant` cannot name a tenant, or None: the one rule for every way a tenant comes in (requests,
    the HTTP front door, gateway tokens, the CLI)."""
    if not isinstance(tenant, str):
        return "tenant must be a string"
    if not tenant.strip():
        return "tenant is empty"
    if len(tenant) > MAX_TENANT:
        return f"tenant is longer than {MAX_TENANT} characters"
    if not TENANT_NAME.fullmatch(tenant):
        return (f"tenant {tenant!r} must be letters, digits, '.', '_' and '-', starting with a letter or digit "
                "(':' separates tenant and user in keys)")
    return None


def routing_key(record: dict) -> bytes:
    """Partition key of any record about a user (a request, preferences, a device, engagement): the
    user's key; for fan-out requests the request id (the flow re-keys by user)."""
    user = record.get("user_id")
    return (user_key(record.get("tenant"), user) if user else record["id"]).encode()


def preferences_record(user_id: str, **fields) -> dict:
    """A PreferencesUpdated record: everything on, no marketing consent, unless `fields` say otherwise."""
    record = {"user_id": user_id, "updated_at": datetime.now(UTC), "deleted": False, "enabled": True,
              "quiet_hours": None, "digest": None, "channels": {}, "categories": {}, "marketing_consent": False,
              "email": None, "phone": None, "locale": None, "timezone": "UTC", "presentation": None,
              "tenant": DEFAULT_TENANT, **fields}
    record["updated_at"] = parse_time(record["updated_at"])
    return record


def device_record(user_id: str, device_id: str, platform: str, **fields) -> dict:
    """An active DeviceRegistered record; give `token` for FCM/APNs or `web_push` for a browser."""
    record = {"user_id": user_id, "device_id": device_id, "platform": platform, "token": None, "web_push": None,
              "app_version": None, "registered_at": datetime.now(UTC), "active": True,
              "tenant": DEFAULT_TENANT, **fields}
    record["registered_at"] = parse_time(record["registered_at"])
    return record


def without_channel(preferences: dict, category: str, channel: str, *, withdraw_consent: bool) -> dict:
    """The user's preferences with `channel` turned off for `category` and every other setting kept
    (an unsubscribe link); `withdraw_consent` also withdraws marketing consent."""
    current = preferences["categories"].get(category) or {"enabled": True, "channels": [], "priority_override": None}
    kept = [c for c in (current["channels"] or CHANNELS) if c != channel]
    categories = {**preferences["categories"], category: {**current, "channels": kept, "enabled": bool(kept)
                                                          and current["enabled"]}}
    return {**preferences, "categories": categories,
            "marketing_consent": preferences["marketing_consent"] and not withdraw_consent}
