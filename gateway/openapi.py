"""The gateway's API as OpenAPI 3.1, served at /openapi.json."""

from __future__ import annotations

from gateway.engagement import REPORTED_ACTIONS
from gateway.ingest import MAX_BATCH, MAX_IDEMPOTENCY_KEY
from kernel.topics import DEVICES, ENGAGEMENT, EVENTS, PREFERENCES
from schemas.json_schema import json_schema


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str = "OK") -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERRORS = {"400": _json(_ref("Error"), "Invalid request; `error` says why"),
          "401": _json(_ref("Error"), "Missing, forged or expired token"),
          "404": _json(_ref("Error"), "Not found (or not the caller's)")}
ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
DEVICE = {"name": "device", "in": "query", "schema": {"type": "string"},
          "description": f"The device making the change, carried by the engagement published to {ENGAGEMENT}"}
# The signed link of an email (kernel.unsubscribe): user, category, notification, expiry, signature,
# and the user's tenant unless it is the default one.
LINK = [{"name": name, "in": "query", "required": True, "schema": {"type": "string"}, "description": what}
        for name, what in (("u", "user"), ("c", "category"), ("n", "the email's notification id"),
                           ("e", "expiry, epoch seconds"), ("t", "signature"))] + [
    {"name": "g", "in": "query", "schema": {"type": "string"}, "description": "the user's tenant (default: default)"}]
REFUSED = {"400": {"description": "Malformed link, or a POST without List-Unsubscribe=One-Click"},
           "403": {"description": "Forged, altered or expired link; nothing changes"}}

# The front door fills in what it can: the id, the creation time, and the API key's tenant and sender.
REQUEST = json_schema("NotificationRequested", {"id", "tenant", "metadata", "metadata.created_at",
                                                "metadata.source_app"})
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "string"}}}
INGEST = {"post": {
    "summary": f"Publish one notification request (an object) or a batch (an array of up to {MAX_BATCH}) to "
               f"{EVENTS}, as the sender of the API key: checked as the notification flow checks them and against "
               "the sender's grant; all or nothing",
    "security": [{"apiKey": []}],
    "parameters": [{"name": "Idempotency-Key", "in": "header", "schema": {
        "type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY, "pattern": "^[\\x20-\\x7e]+$"},
        "description": "The same key with the same body gets the first answer again and publishes nothing"}],
    "requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": [
        _ref("NotificationRequest"),
        {"type": "array", "minItems": 1, "maxItems": MAX_BATCH, "items": _ref("NotificationRequest")}]}}}},
    "responses": {
        "202": _json({"type": "object", "required": ["accepted", "ids"], "properties": {
            "accepted": {"type": "integer"}, "ids": {"type": "array", "items": {"type": "string"}}}},
            "Accepted: published and acknowledged by the broker; the ids in the order given"),
        "400": ERRORS["400"],
        "401": _json(_ref("Error"), "Missing, unknown or revoked API key"),
        "409": {**_json(_ref("Error"), "A request with this Idempotency-Key is still being handled"),
                "headers": RETRY_AFTER},
        "413": _json(_ref("Error"), "The body is too large"),
        "422": _json({"type": "object", "required": ["error"], "properties": {
            "error": {"type": "string"}, "rejected": {"type": "array", "items": {
                "type": "object", "required": ["index", "reason"], "properties": {
                    "index": {"type": "integer"}, "id": {}, "reason": {"type": "string"}}}}}},
            "Refused, nothing published: a reason per refused item, or the Idempotency-Key reused with another "
            "body, or a batch larger than the key's rate"),
        "429": {**_json(_ref("Error"), "Over the API key's notifications a minute"), "headers": RETRY_AFTER},
        "503": {**_json(_ref("Error"), "The broker did not take them; nothing accepted, retry"),
                "headers": RETRY_AFTER}}}}

OPENAPI = {
    "openapi": "3.1.0",
    "info": {"title": "notifyflow gateway", "version": "1",
             "description": "Live notifications (WebSocket /ws, Server-Sent Events /events), the notification "
                            "center, preferences, devices and engagement. Every call carries a JWT "
                            "(`Authorization: Bearer`, or `?token=` where headers cannot be set); the user is "
                            "its `sub` in the tenant of its `tenant` claim (none: the default tenant)."},
    "security": [{"bearer": []}],
    "paths": {
        "/api/notifications": {"get": {
            "summary": "The caller's notifications, newest first",
            "parameters": [
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
                {"name": "cursor", "in": "query", "schema": {"type": "string"},
                 "description": "`next_cursor` of the previous page"},
                {"name": "category", "in": "query", "schema": {"type": "string"}},
                {"name": "state", "in": "query",
                 "schema": {"enum": ["inbox", "unread", "read", "archived", "all"], "default": "inbox"}}],
            "responses": {"200": _json({"type": "object", "properties": {
                "items": {"type": "array", "items": _ref("Notification")},
                "next_cursor": {"type": ["string", "null"]}}}), **ERRORS}}},
        "/api/notifications/unread-count": {"get": {
            "summary": "Unread notifications, in total and per category",
            "responses": {"200": _json({"type": "object", "properties": {
                "total": {"type": "integer"}, "by_category": {"type": "object",
                                                              "additionalProperties": {"type": "integer"}}}}),
                **ERRORS}}},
        "/api/notifications/read-all": {"post": {
            "summary": "Mark every unread notification read (optionally one category); syncs every device; "
                       f"one `read` engagement per notification changed to {ENGAGEMENT}",
            "parameters": [{"name": "category", "in": "query", "schema": {"type": "string"}}, DEVICE],
            "responses": {"200": _json({"type": "object", "properties": {"read": {"type": "integer"}}}),
                          **ERRORS}}},
        "/api/notifications/{id}/{action}": {"post": {
            "summary": "Mark read, unread or archived; syncs every device; the engagement (read, unread, "
                       f"archived) to {ENGAGEMENT}",
            "parameters": [ID, {"name": "action", "in": "path", "required": True,
                                "schema": {"enum": ["read", "unread", "archive"]}}, DEVICE],
            "responses": {"200": _json(_ref("Notification")), **ERRORS}}},
        "/api/notifications/{id}": {"delete": {
            "summary": f"Delete a notification; a `deleted` engagement to {ENGAGEMENT}", "parameters": [ID, DEVICE],
            "responses": {"204": {"description": "Deleted"}, **ERRORS}}},
        "/api/preferences": {
            "get": {"summary": "The caller's preferences (defaults until first saved)",
                    "responses": {"200": _json(_ref("Preferences")), **ERRORS}},
            "put": {"summary": f"Replace the caller's preferences; published to {PREFERENCES}",
                    "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("Preferences")}}},
                    "responses": {"200": _json(_ref("Preferences")), **ERRORS}}},
        "/api/devices": {"post": {
            "summary": f"Register a push token or Web Push subscription; published to {DEVICES}",
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("Device")}}},
            "responses": {"201": _json({"type": "object"}, "Registered"), **ERRORS}}},
        "/api/devices/{device_id}": {"delete": {
            "summary": "Unregister a device",
            "parameters": [{"name": "device_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"204": {"description": "Unregistered"}, **ERRORS}}},
        "/api/push/config": {"get": {
            "summary": "The VAPID public key browsers subscribe to Web Push with (null when Web Push is off)",
            "responses": {"200": _json({"type": "object", "properties": {
                "vapid_public_key": {"type": ["string", "null"]}}}, "Push settings"), **ERRORS}}},
        "/api/engagement": {"post": {
            "summary": "Report what only the client sees: a toast seen in a visible tab, opened, clicked (with "
                       f"action_id), dismissed; published to {ENGAGEMENT}",
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("Engagement")}}},
            "responses": {"202": {"description": "Accepted"}, **ERRORS}}},
        "/events": {"get": {
            "summary": "Server-Sent Events: missed changes after Last-Event-ID, then live ones",
            "parameters": [{"name": "Last-Event-ID", "in": "header", "schema": {"type": "string"}}],
            "responses": {"200": {"description": "text/event-stream of notification.* events",
                                  "content": {"text/event-stream": {}}}, **ERRORS}}},
        "/ws": {"get": {
            "summary": "WebSocket: ?token=&last_event_id=&device=; sends the same events as /events, "
                       "accepts {\"type\": \"read\"|\"unread\"|\"archive\", \"ids\": [...]}",
            "responses": {"101": {"description": "Switching protocols"}}}},
        "/unsubscribe": {
            "get": {"summary": "One-click unsubscribe link of an email: a confirmation page with a button; changes "
                               "nothing (mail scanners fetch links)", "security": [], "parameters": LINK,
                    "responses": {"200": {"description": "HTML page with a form POSTing "
                                                         "List-Unsubscribe=One-Click to the same URL"}, **REFUSED}},
            "post": {"summary": f"RFC 8058 one-click unsubscribe, no login: turns the category's email off "
                                f"(and marketing consent for categories that need it); an `unsubscribed` engagement "
                                f"to {ENGAGEMENT}", "security": [], "parameters": LINK,
                     "requestBody": {"required": True, "content": {
                         media: {"schema": {"type": "object", "required": ["List-Unsubscribe"], "properties": {
                             "List-Unsubscribe": {"const": "One-Click"}}}}
                         for media in ("application/x-www-form-urlencoded", "multipart/form-data")}},
                     "responses": {"200": {"description": "Unsubscribed: JSON, or an HTML page when the client "
                                                          "accepts text/html"}, **REFUSED}}},
        "/v1/notifications": INGEST,
        "/health": {"get": {"summary": "Liveness", "security": [], "responses": {"200": {"description": "OK"}}}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "security": [],
                             "responses": {"200": {"description": "text/plain exposition format"}}}},
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                            "apiKey": {"type": "http", "scheme": "bearer", "description": "A sender's API key "
                                       "(`notifyflow keys create`): nfk_<id>_<secret>"}},
        "schemas": {
            "NotificationRequest": REQUEST,
            "Error": {"type": "object", "properties": {"error": {"type": "string"}}},
            "Notification": {"type": "object", "properties": {
                name: {"type": kind} for name, kind in (
                    ("id", "string"), ("category", "string"), ("priority", "string"), ("type", "string"),
                    ("title", "string"), ("body", "string"), ("html_body", ["string", "null"]),
                    ("image_url", ["string", "null"]), ("icon", ["string", "null"]), ("actions", "array"),
                    ("deep_link", ["string", "null"]), ("campaign_id", ["string", "null"]),
                    ("variant", ["string", "null"]), ("presentation", ["object", "null"]),
                    ("merge_count", "integer"), ("revision", "integer"),
                    ("event_seq", "integer"), ("created_at", "string"), ("read", "boolean"),
                    ("archived", "boolean"))}},
            "Preferences": {"type": "object", "description": "PreferencesUpdated without user_id/updated_at: "
                            "enabled, quiet_hours, digest, channels, categories, marketing_consent, email, phone, "
                            "locale, timezone, presentation (push sound and vibration; toast auto_dismiss and "
                            "duration_seconds, 3 to 30) (schemas/PreferencesUpdated.avsc)"},
            "Device": {"type": "object", "required": ["device_id", "platform"], "properties": {
                "device_id": {"type": "string"}, "platform": {"enum": ["ios", "android", "web", "desktop"]},
                "token": {"type": ["string", "null"]}, "app_version": {"type": ["string", "null"]},
                "web_push": {"type": ["object", "null"], "properties": {
                    "endpoint": {"type": "string"}, "p256dh": {"type": "string"}, "auth": {"type": "string"}}}}},
            "Engagement": {"type": "object", "required": ["notification_id", "action"], "properties": {
                "notification_id": {"type": "string"},
                "action": {"enum": list(REPORTED_ACTIONS)},
                "action_id": {"type": ["string", "null"]}, "device_id": {"type": ["string", "null"]},
                "channel": {"enum": ["push", "email", "sms", "webhook", "in_app"]}}},
        },
    },
}
