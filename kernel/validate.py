"""Checks a decoded NotificationRequested beyond what Avro can express.

A request that fails here is the sender's mistake: the flow dead-letters it with the reason,
never silently dropped, and the HTTP front door (gateway/ingest.py) answers 422 with the same
reason. An expired request is not a mistake; the flow drops it with an `expired` status.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from kernel.requests import tenant_problem

MAX_TITLE = 200
MAX_BODY = 4000
MAX_ACTIONS = 3
MAX_NAME = 128  # ids and categories (tenants: kernel/requests.py tenant_problem)
MAX_PAYLOAD_BYTES = 4096  # what FCM and APNs carry as data, with room for our own keys
MAX_AUDIENCE = 10_000
MAX_CLOCK_SKEW = timedelta(minutes=5)
MAX_SCHEDULE_AHEAD = timedelta(days=365)
# Schemes that run code or read local files when a client follows them.
HOSTILE_SCHEMES = {"javascript", "data", "vbscript", "file", "blob", "about", "chrome", "intent"}
APP_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*$")
ACTION_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def problem(request: dict, now: datetime) -> str | None:
    """Why the request cannot be processed, or None when it can."""
    has_user, audience = bool(request["user_id"]), request["audience"]
    has_audience = bool(audience and (audience["user_ids"] or audience["segment"] or audience["topic"]))
    if has_user == has_audience:
        return "exactly one of user_id and audience must be set"
    if reason := tenant_problem(request["tenant"]):
        return reason
    for name, value in (("id", request["id"]), ("category", request["category"]),
                        ("metadata.source_app", request["metadata"]["source_app"]),
                        ("user_id", request["user_id"] or "-")):
        if not value.strip():
            return f"{name} is empty"
        if len(value) > MAX_NAME:
            return f"{name} is longer than {MAX_NAME} characters"
    if audience and len(audience["user_ids"]) > MAX_AUDIENCE:
        return f"audience.user_ids has {len(audience['user_ids'])} users; at most {MAX_AUDIENCE} per request"
    for kind in ("segment", "topic"):
        if audience and audience[kind] is not None and not 0 < len(audience[kind].strip()) <= MAX_NAME:
            return f"audience.{kind} must be 1 to {MAX_NAME} characters"
    for i, user in enumerate(audience["user_ids"] if audience else []):
        if not user.strip():
            return f"audience.user_ids[{i}] is empty"
        if len(user) > MAX_NAME:
            return f"audience.user_ids[{i}] is longer than {MAX_NAME} characters"
    return content_problem(request) or time_problem(request, now)


def content_problem(request: dict) -> str | None:
    content = request["content"]
    # Judged as clean_text will leave it: a title of control characters only ends up empty.
    if not CONTROL_CHARS.sub("", content["title"]).strip() and not request["template_id"]:
        return "content.title is empty"
    if len(content["title"]) > MAX_TITLE:
        return f"content.title is longer than {MAX_TITLE} characters"
    if len(content["body"]) > MAX_BODY:
        return f"content.body is longer than {MAX_BODY} characters"
    if len(content["actions"]) > MAX_ACTIONS:
        return f"content.actions has {len(content['actions'])} actions; at most {MAX_ACTIONS}"
    payload = request["metadata"]["payload"]
    if sum(len(k.encode()) + len(v.encode()) for k, v in payload.items()) > MAX_PAYLOAD_BYTES:
        return f"metadata.payload is larger than {MAX_PAYLOAD_BYTES} bytes"
    links = [("content.image_url", content["image_url"], False), ("content.icon", content["icon"], False),
             ("metadata.deep_link", request["metadata"]["deep_link"], True)]
    # An action is either an identifier the app handles ("reply") or a link it opens; anything
    # else ("//evil.example", "../x") would be followed as a relative link by some client.
    links += [(f"content.actions[{i}].action", a["action"], True)
              for i, a in enumerate(content["actions"]) if not ACTION_ID.fullmatch(a["action"])]
    for name, url, app_links_allowed in links:
        if url is not None and (reason := url_problem(url, app_links_allowed)):
            return f"{name}: {reason}"
    return None


def url_problem(url: str, app_links_allowed: bool) -> str | None:
    """Images load over https only; deep links may also open the app through its own scheme."""
    if CONTROL_CHARS.search(url) or any(c.isspace() for c in url):
        return "URL contains whitespace or control characters"
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        return f"not a URL ({exc})"
    scheme = parts.scheme.lower()
    if scheme in HOSTILE_SCHEMES:
        return f"scheme {scheme!r} is not allowed"
    if scheme == "https":
        return None if parts.hostname else "https URL without a host"
    if app_links_allowed and scheme and scheme != "http" and APP_SCHEME.match(scheme):
        return None
    alternative = " or an app scheme" if app_links_allowed else ""
    return f"scheme {scheme or '(none)'!r} is not allowed; use https{alternative}"


def time_problem(request: dict, now: datetime) -> str | None:
    created = request["metadata"]["created_at"]
    if created > now + MAX_CLOCK_SKEW:
        return f"metadata.created_at {created.isoformat()} is in the future"
    expires = request["metadata"]["expires_at"]
    if expires is not None and expires <= created:
        return "metadata.expires_at is not after metadata.created_at"
    scheduled = request["scheduled_at"]
    if scheduled is not None and scheduled > now + MAX_SCHEDULE_AHEAD:
        return f"scheduled_at {scheduled.isoformat()} is more than a year ahead"
    return None


def is_expired(request: dict, now: datetime) -> bool:
    expires = request["metadata"]["expires_at"]
    return expires is not None and expires <= now


def clean_text(request: dict) -> dict:
    """Strip control characters that break terminals, SMS gateways and push payloads."""
    content = request["content"]
    actions = [{**action, "title": CONTROL_CHARS.sub("", action["title"])} for action in content["actions"]]
    return {**request, "content": {**content, "title": CONTROL_CHARS.sub("", content["title"]),
                                   "body": CONTROL_CHARS.sub("", content["body"]), "actions": actions}}
