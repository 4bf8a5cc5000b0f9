"""The HTTP API: the notification center, preferences, devices, engagement reports, and the
service endpoints (health, metrics, OpenAPI, the demo's token and home page). Every /api request
is the token's user's (its tenant and user id); a change made here reaches the user's open devices through the hub."""

from __future__ import annotations

import asyncio
import json

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from gateway import metrics
from gateway.auth import TokenVerifier, User, issue_token
from gateway.center import BadRequest, Center, parse_seq
from gateway.engagement import Engagements, engagement_record, parse_report
from gateway.hub import CHANGES, Hub
from gateway.openapi import OPENAPI
from gateway.publisher import Publisher
from gateway.store import Store
from kernel.clock import utcnow
from kernel.requests import device_record, preferences_record, tenant_problem
from kernel.schedule import next_digest_at, parse_zone, quiet_until
from kernel.topics import DEVICES, PREFERENCES

NOT_FOUND = {"error": "not found"}
# How long a toast that closes by itself may stay: long enough to read, short enough to be a toast.
MIN_TOAST_S, MAX_TOAST_S = 3, 30


class Rest:
    def __init__(self, center: Center, store: Store, hub: Hub, publisher: Publisher, engagements: Engagements,
                 verifier: TokenVerifier, vapid_public_key: str | None) -> None:
        self.center, self.store, self.hub, self.publisher = center, store, hub, publisher
        self.engagements = engagements
        self.verifier, self.vapid_public_key = verifier, vapid_public_key

    async def health(self, request: Request) -> Response:
        """200 while this process serves: `{"status": "ok"}`, or `degraded` with the dependencies
        that are away. Never 503 for them: Redis and PostgreSQL are shared by every gateway, so a
        503 would take every gateway out of the load balancer at once (and a liveness probe would
        restart them all) while each still serves what it can and catches its devices up after."""
        redis_up, postgres_up = await asyncio.gather(self.hub.healthy(), self.center.healthy())
        unavailable = [name for name, up in (("redis", redis_up), ("postgres", postgres_up)) if not up]
        return JSONResponse({"status": "degraded", "unavailable": unavailable} if unavailable else {"status": "ok"})

    async def prometheus(self, request: Request) -> Response:
        return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(OPENAPI)

    async def demo_token(self, request: Request) -> Response:
        user, tenant = request.query_params.get("user", ""), request.query_params.get("tenant")
        if not user or self.verifier.algorithm != "HS256":
            raise BadRequest("demo tokens need ?user= (and ?tenant= for another than the default) and an HS256 secret")
        if tenant and (reason := tenant_problem(tenant)):
            raise BadRequest(reason)
        claims = {"tenant": tenant} if tenant else {}
        return JSONResponse({"user": user, "token": issue_token(user, self.verifier.key, ttl_s=8 * 3600, **claims)})

    async def home(self, request: Request) -> Response:
        query = request.url.query  # ?user=bob must still pick bob
        return RedirectResponse("/static/demo.html" + (f"?{query}" if query else ""))

    async def push_config(self, request: Request) -> Response:
        self.verifier.user_of_request(request)
        return JSONResponse({"vapid_public_key": self.vapid_public_key})

    async def list_notifications(self, request: Request) -> Response:
        user, q = self.verifier.user_of_request(request), request.query_params
        return JSONResponse(await self.center.page(user, limit=parse_seq(q.get("limit")) or 20,
                                                   cursor=q.get("cursor"), category=q.get("category"),
                                                   state=q.get("state", "inbox")))

    async def unread_count(self, request: Request) -> Response:
        return JSONResponse(await self.center.unread_counts(self.verifier.user_of_request(request)))

    async def change(self, request: Request) -> Response:
        user, action = self.verifier.user_of_request(request), request.path_params["action"]
        if action not in CHANGES:
            return JSONResponse({"error": f"unknown action {action}"}, status_code=404)
        rows = await self.center.set_state(user, [request.path_params["id"]], action)
        if not rows:  # not the caller's, or no such notification: the same answer either way
            return JSONResponse(NOT_FOUND, status_code=404)
        await self.hub.publish_changes(user, action, rows)
        self.engagements.center_change(user, action, rows, device_of(request))
        return JSONResponse(rows[0])

    async def read_all(self, request: Request) -> Response:
        user = self.verifier.user_of_request(request)
        rows = await self.center.read_all(user, request.query_params.get("category"))
        await self.hub.publish_changes(user, "read", rows)
        self.engagements.center_change(user, "read", rows, device_of(request))
        return JSONResponse({"read": len(rows)})

    async def delete(self, request: Request) -> Response:
        user, notification_id = self.verifier.user_of_request(request), request.path_params["id"]
        deleted = await self.center.delete(user, notification_id)
        if deleted is None:
            return JSONResponse(NOT_FOUND, status_code=404)
        await self.hub.publish(user, {"event": "notification.deleted", "event_seq": deleted["event_seq"],
                                      "notification": {"id": notification_id, "deleted": True}})
        self.engagements.center_change(user, "delete", [{**deleted, "id": notification_id}], device_of(request))
        return Response(status_code=204)

    async def get_preferences(self, request: Request) -> Response:
        user = self.verifier.user_of_request(request)
        saved = await self.store.preferences(user)
        return JSONResponse(saved if saved is not None
                            else preferences_json(preferences_record(user.id, tenant=user.tenant)))

    async def put_preferences(self, request: Request) -> Response:
        user, body = self.verifier.user_of_request(request), await json_body(request)
        record = preferences_record(**{**body, "user_id": user.id, "tenant": user.tenant, "updated_at": utcnow(),
                                       "deleted": False})
        # As the flows will read it: unknown or mistyped fields refused, defaults filled in.
        record = self.publisher.validated(PREFERENCES, record)
        check_settings(record)
        self.publisher.publish(PREFERENCES, record)
        saved = preferences_json(record)
        await save_preferences(self.store, self.hub, user, saved)
        return JSONResponse(saved)

    async def register_device(self, request: Request) -> Response:
        user, body = self.verifier.user_of_request(request), await json_body(request)
        if not isinstance(body.get("device_id"), str) or not isinstance(body.get("platform"), str):
            raise BadRequest("device_id and platform are required")
        record = device_record(**{**body, "user_id": user.id, "tenant": user.tenant, "registered_at": utcnow(),
                                  "active": True})
        self.publisher.publish(DEVICES, record)
        await self.store.register_device(user, record)
        return JSONResponse({"device_id": record["device_id"], "active": True}, status_code=201)

    async def remove_device(self, request: Request) -> Response:
        user, device_id = self.verifier.user_of_request(request), request.path_params["device_id"]
        device = await self.store.deactivate_device(user, device_id)
        if device is None:
            return JSONResponse(NOT_FOUND, status_code=404)
        self.publisher.publish(DEVICES, device_record(user.id, device_id, device["platform"], token=device["token"],
                                                      active=False, tenant=user.tenant))
        return Response(status_code=204)

    async def engagement(self, request: Request) -> Response:
        user, report = self.verifier.user_of_request(request), parse_report(await json_body(request))
        attribution = await self.center.attribution(user, report["notification_id"])
        if attribution is None:
            return JSONResponse(NOT_FOUND, status_code=404)
        self.engagements.publish(engagement_record(user, report.pop("notification_id"), report.pop("action"),
                                                   attribution, **report))
        return Response(status_code=202)


async def json_body(request: Request) -> dict:
    try:
        body = await request.json()
    except json.JSONDecodeError:
        raise BadRequest("the body is not JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def device_of(request: Request) -> str | None:
    """The device a center change comes from, when the client says (?device=, as on /ws)."""
    return request.query_params.get("device") or None


def check_settings(record: dict) -> None:
    """Quiet hours, digest and presentation settings must be usable before the flows rely on them."""
    parse_zone(record["timezone"], "timezone")
    quiet_until(record["quiet_hours"], utcnow())
    if record["digest"]:
        next_digest_at(record["digest"], utcnow())
    duration = (record["presentation"] or {}).get("duration_seconds", MIN_TOAST_S)
    if not MIN_TOAST_S <= duration <= MAX_TOAST_S:
        raise BadRequest(f"presentation.duration_seconds must be from {MIN_TOAST_S} to {MAX_TOAST_S}, not {duration}")


async def save_preferences(store: Store, hub: Hub, user: User, preferences: dict) -> None:
    """The gateway's copy, and every open device of the user shows the change."""
    await store.save_preferences(user, preferences)
    await hub.publish(user, {"event": "preferences.updated", "preferences": preferences})


def preferences_json(record: dict) -> dict:
    return {key: value for key, value in record.items() if key not in ("updated_at", "deleted")}
