"""Builders for the unit tests of the notification flow's plain step modules.

Requests start from `kernel.requests.notification_request` and get every field it leaves
out at its Avro default (read from the schema itself, so a new field cannot be forgotten).
Items at a given stage are produced by running the real steps, in the order
`flows/notifications.py` wires them, on real Avro bytes: tests then keep matching the pipeline.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import schemas
from flows import audience, channels, outbox, preferences
from flows.dedup import DedupMerge
from flows.digest import Digest
from flows.intake import Intake
from flows.quiet_hours import QuietHours
from flows.rate_limit import RateLimit
from flows.render import render
from flows.templates import TemplateCatalog
from flows.user_state import JoinUserState, default_preferences, view
from kernel.keyed import Each
from kernel.requests import DEFAULT_TENANT, notification_request, routing_key, user_key
from kernel.topics import EVENTS, codec_for

# A Friday, on whole milliseconds so it survives an Avro round trip unchanged.
NOW = datetime(2024, 5, 17, 12, 0, tzinfo=UTC)

STAGES = ("decode_and_validate", "expand_audience", "join_user_state", "dedup_merge", "apply_preferences",
          "quiet_hours", "render_template", "select_channels", "rate_limit", "digest")

_SCHEMA_DIR = Path(schemas.__file__).parent


def avro_defaults(record: dict, schema_name: str) -> dict:
    """`record` with every missing field of the schema (nested records too) at its Avro default."""
    return _fill(record, json.loads((_SCHEMA_DIR / f"{schema_name}.avsc").read_text()))


def _fill(record: dict, schema: dict) -> dict:
    out = dict(record)
    for field in schema["fields"]:
        name, kind = field["name"], field["type"]
        if name not in out:
            if "default" in field:
                out[name] = copy.deepcopy(field["default"])
        elif isinstance(kind, dict) and kind.get("type") == "record" and isinstance(out[name], dict):
            out[name] = _fill(out[name], kind)
    return out


# --- NotificationRequested ------------------------------------------------------------------


def request(user_id: str | None = "alice", *, title: str = "Deploy finished", body: str = "main is green",
            category: str = "general", priority: str = "normal", content: dict | None = None,
            metadata: dict | None = None, **fields) -> dict:
    """A complete NotificationRequested created at NOW; `content`/`metadata` are merged into the defaults."""
    record = notification_request(user_id=user_id, title=title, body=body, category=category,
                                  priority=priority, **fields)
    record["content"] = {**record["content"], **(content or {})}
    record["metadata"] = {**record["metadata"], "created_at": NOW, **(metadata or {})}
    return avro_defaults(record, "NotificationRequested")


def audience_of(user_ids: Iterable[str] = (), segment: str | None = None, topic: str | None = None) -> dict:
    return {"user_ids": list(user_ids), "segment": segment, "topic": topic}


def fan_out(user_ids: Iterable[str] = (), segment: str | None = None, topic: str | None = None, **fields) -> dict:
    """A request for an audience instead of one user."""
    return request(None, audience=audience_of(user_ids, segment, topic), **fields)


def action(action_id: str = "open", title: str = "Open", target: str = "open", icon: str | None = None) -> dict:
    return {"id": action_id, "title": title, "action": target, "icon": icon}


def encode(record: dict, topic: str = EVENTS) -> bytes:
    return codec_for(topic).encode(record)


# --- user state ---------------------------------------------------------------------------------


def preferences_record(user_id: str = "alice", **fields) -> dict:
    """A PreferencesUpdated: the defaults a new user gets, changed by `fields`."""
    return {**default_preferences(user_id), "updated_at": NOW, **fields}


def channel_settings(enabled: bool = True, categories: Iterable[str] = (), frequency: str | None = None,
                     emergency_only: bool = False) -> dict:
    return {"enabled": enabled, "categories": list(categories), "frequency": frequency,
            "emergency_only": emergency_only}


def category_settings(enabled: bool = True, channels: Iterable[str] = (), priority_override: str | None = None) -> dict:
    return {"enabled": enabled, "channels": list(channels), "priority_override": priority_override}


def quiet_hours(start: str, end: str, timezone: str = "UTC", days: Iterable[str] = ()) -> dict:
    return {"start_time": start, "end_time": end, "timezone": timezone, "days": list(days)}


def digest_settings(frequency: str = "daily", time: str = "09:00", timezone: str = "UTC", enabled: bool = True) -> dict:
    return {"enabled": enabled, "frequency": frequency, "time": time, "timezone": timezone}


def web_push_subscription(n: int = 1) -> dict:
    return {"endpoint": f"https://push.example.com/sub/{n}", "p256dh": f"p256dh-{n}", "auth": f"auth-{n}"}


def device(user_id: str = "alice", device_id: str = "phone-1", platform: str = "android",
           token: str | None = "fcm-token-1", web_push: dict | None = None, active: bool = True,
           tenant: str = DEFAULT_TENANT) -> dict:
    return {"user_id": user_id, "device_id": device_id, "platform": platform, "token": token,
            "web_push": web_push, "app_version": "1.0", "registered_at": NOW, "active": active, "tenant": tenant}


def presence(user_id: str = "alice", device_id: str = "phone-1", status: str = "online", at: datetime = NOW,
             tenant: str = DEFAULT_TENANT) -> dict:
    return {"user_id": user_id, "device_id": device_id, "status": status, "at": at, "gateway_id": "gw-1",
            "tenant": tenant}


def user_records(user_id: str = "alice", *, devices: Iterable[dict] = (), online: bool = False,
                 **prefs) -> list[tuple[str, dict]]:
    """(topic, record) for a user: preferences when any are given, devices, and presence when online."""
    devices = list(devices)
    out = [("notify.preferences", preferences_record(user_id, **prefs))] if prefs else []
    out += [("notify.devices", d) for d in devices]
    if online:
        out.append(("notify.presence", presence(user_id, devices[0]["device_id"] if devices else "browser-1")))
    return out


def user_view(user_id: str = "alice", *, devices: Iterable[dict] = (), online: bool = False, **prefs) -> dict:
    """The snapshot join_user_state attaches, built by the real step from real user-state records."""
    step = JoinUserState()
    state = step.new_state()
    step.process(state, [user_state_item(t, r) for t, r in user_records(user_id, devices=devices, online=online,
                                                                       **prefs)], NOW)
    return view(state, user_id, NOW)


def user_state_item(topic: str, record: dict, now: datetime = NOW) -> dict:
    """A user-state record as intake turns it into an item (through real Avro bytes)."""
    return Intake().item(topic, 0, 0, record["user_id"].encode(), encode(record, topic), now)


# --- running the real steps --------------------------------------------------------------------


class MembersOf:
    """The injected segment/topic lookup: a plain dict, remembering what it was asked."""

    def __init__(self, members: dict[str, list[str]] | None = None) -> None:
        self.members = dict(members or {})
        self.calls: list[set[str]] = []

    def __call__(self, groups: set[tuple[str, str]]) -> dict[tuple[str, str], list[str]]:
        """Asked for (tenant, group) pairs; `members` and `calls` name the default tenant's groups plainly."""
        def name(tenant: str, group: str):
            return group if tenant == DEFAULT_TENANT else (tenant, group)

        self.calls.append({name(*wanted) for wanted in groups})
        return {wanted: list(self.members[name(*wanted)]) for wanted in groups if name(*wanted) in self.members}


# The catalog the pipeline renders with unless a test brings its own; defined here, not read from
# infra/templates, so editing the shipped samples cannot change these tests.
TEMPLATES = {
    "welcome": {"variants": {"A": {"weight": 1, "locales": {
        "en": {"title": "Welcome to {{ product }}, {{ name }}!", "body": "Hi {{ name }}, your account is ready."},
        "fr": {"title": "Bienvenue sur {{ product }}, {{ name }} !", "body": "Bonjour {{ name }}, votre compte est prêt."},
    }}}},
}


def sample_catalog() -> TemplateCatalog:
    return TemplateCatalog(TEMPLATES)


class Pipeline:
    """The notification flow's steps, in order, without bytewax: per-user state kept per (step, user).

    `run` takes requests through intake (real Avro bytes) and on, stopping after `until`;
    items finished at intake skip the rest, as in the flow. `release` plays the timers.
    """

    def __init__(self, *, until: str = "digest", members: dict[str, list[str]] | None = None,
                 catalog: TemplateCatalog | None = None) -> None:
        self.until = STAGES.index(until)
        self.intake = Intake()
        self.members_of = MembersOf(members)
        self.catalog = catalog or sample_catalog()
        self.steps = {"join_user_state": JoinUserState(), "dedup_merge": DedupMerge(),
                      "quiet_hours": QuietHours(), "rate_limit": RateLimit(), "digest": Digest()}
        # The stateless steps, wrapped as the flow wraps them (finished items pass untouched).
        self.maps: dict[str, Each] = {
            "apply_preferences": Each(preferences.apply),
            "render_template": Each(lambda item: render(self.catalog, item)),
            "select_channels": Each(channels.select),
        }
        self.states: dict[tuple[str, str], dict] = {}
        self.offset = 0

    def state(self, stage: str, user_id: str = "alice") -> dict:
        return self.states.setdefault((stage, user_id), self.steps[stage].new_state())

    def message(self, topic: str, key: bytes | None, value: bytes, now: datetime = NOW) -> dict:
        self.offset += 1
        return self.intake.item(topic, 0, self.offset, key, value, now)

    def user(self, user_id: str = "alice", *, devices: Iterable[dict] = (), online: bool = False,
             now: datetime = NOW, **prefs) -> Pipeline:
        """Feed the user's state records (as real Avro messages) into join_user_state."""
        items = [self.message(topic, user_id.encode(), encode(record, topic), now)
                 for topic, record in user_records(user_id, devices=devices, online=online, **prefs)]
        self.update(items, now)
        return self

    def update(self, items: list[dict], now: datetime = NOW) -> None:
        assert self._step("join_user_state", items, now) == []

    def run(self, *requests: dict, now: datetime = NOW) -> list[dict]:
        items = [self.message(EVENTS, routing_key(r), encode(r), now) for r in requests]
        rejected = [item for item in items if item.get("outcome")]
        return rejected + self.flow(1, [item for item in items if not item.get("outcome")], now)

    def flow(self, start: int, items: list[dict], now: datetime) -> list[dict]:
        for stage in STAGES[start:self.until + 1]:
            items = self._step(stage, items, now)
        return items

    def _step(self, stage: str, items: list[dict], now: datetime) -> list[dict]:
        if stage == "expand_audience":
            return audience.expand(items, self.members_of)
        if stage in self.maps:
            return self.maps[stage].process({}, items, now)
        by_user: dict[str, list[dict]] = {}
        for item in items:
            assert isinstance(item["user_id"], str), f"the flow keys by user id, got {item['user_id']!r}"
            by_user.setdefault(user_key(item["tenant"], item["user_id"]), []).append(item)
        out = []
        for user_id, batch in by_user.items():
            out += self.steps[stage].process(self.state(stage, user_id), batch, now)
        return out

    def due(self, stage: str, user_id: str = "alice") -> datetime | None:
        return self.steps[stage].due(self.state(stage, user_id))

    def release(self, now: datetime) -> list[dict]:
        """What the timers of the held-back steps hand on at `now`, taken through the rest of the flow."""
        out = []
        for stage in ("quiet_hours", "digest"):
            index = STAGES.index(stage)
            if index > self.until:
                continue
            for (name, _user), state in list(self.states.items()):
                if name == stage:
                    out += self.flow(index + 1, self.steps[stage].release(state, now), now)
        return out


def item_at(stage: str, req: dict | None = None, *, now: datetime = NOW, catalog: TemplateCatalog | None = None,
            **user) -> dict:
    """The one item `req` (default: a plain request for alice) is after `stage`, for a user built from `user`."""
    req = req if req is not None else request()
    pipeline = Pipeline(until=stage, catalog=catalog)
    if req["user_id"]:
        pipeline.user(req["user_id"], **user)
    out = pipeline.run(req, now=now)
    assert len(out) == 1, out
    return out[0]


def records_of(items: Iterable[dict], now: datetime = NOW) -> list[tuple[str, bytes | None, dict]]:
    return [record for item in items for record in outbox.outgoing(item, now)]


def decode_round_trip(record: dict, topic: str = EVENTS) -> dict:
    return codec_for(topic).decode(encode(record, topic))
