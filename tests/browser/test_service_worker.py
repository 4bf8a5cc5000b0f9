"""The Web Push service worker (web/sw.js) and its registration (web/push.js) in real headless
Chromium against the live gateway. There is no push service behind a headless browser, so the
subscription itself is faked at PushManager; everything around it is real: the worker installs and
takes control, gets the session from the page, maps our Web Push sink's payload onto
showNotification, reports clicks with the stored token, and the page registers the subscription
with POST /api/devices."""

from __future__ import annotations

import base64
import uuid

import psycopg
import pytest
from gateway_harness import GATEWAY_VAPID_PUBLIC_KEY, records_for
from playwright.sync_api import expect

pytestmark = pytest.mark.timeout(60)

FAKE_PUSH_MANAGER = """
    // No push service in a headless browser: a subscription as Chrome's push service would return it.
    PushManager.prototype.getSubscription = async function () { return window.__subscription || null; };
    PushManager.prototype.subscribe = async function (options) {
        window.__subscribed = { userVisibleOnly: options.userVisibleOnly,
                                key: Array.from(new Uint8Array(options.applicationServerKey)) };
        window.__subscription = {
            options,
            toJSON: () => ({ endpoint: 'https://push.example/send/abc123', keys: { p256dh: 'BNcR-test-p256dh', auth: 'dGVzdC1hdXRo' } }),
            unsubscribe: async () => true,
        };
        return window.__subscription;
    };
"""


def test_service_worker_registers_shows_pushes_and_reports_clicks(open_page, gateway, deliver, stack):
    user, nid = f"ana-{uuid.uuid4().hex[:10]}", f"n-{uuid.uuid4().hex[:10]}"
    key = GATEWAY_VAPID_PUBLIC_KEY  # the page gets it from GET /api/push/config
    key_bytes = list(base64.urlsafe_b64decode(key + "=" * (-len(key) % 4)))
    page = open_page(permissions=["notifications"])
    page.add_init_script(FAKE_PUSH_MANAGER)
    page.goto(f"{gateway}/static/demo.html?user={user}")
    html = page.locator("html")
    expect(html).to_have_attribute("data-connection", "open", timeout=10_000)
    expect(html).to_have_attribute("data-service-worker", "ready", timeout=10_000)

    worker = page.context.service_workers[0] if page.context.service_workers else \
        page.context.wait_for_event("serviceworker")
    assert worker.url == f"{gateway}/static/sw.js"
    assert page.evaluate("navigator.serviceWorker.getRegistration().then((r) => r.scope)") == f"{gateway}/static/"

    # The session the page handed over (IndexedDB, shared with the worker).
    worker.evaluate("""() => new Promise((resolve) => {  // the page's postMessage may still be in flight
        const poll = async () => ((await self.notifyflowSW.getSession()) ? resolve() : setTimeout(poll, 50));
        poll();
    })""")
    session = worker.evaluate("self.notifyflowSW.getSession()")
    device = page.evaluate("localStorage.getItem('notifyflow.device')")
    assert session["apiBase"] == gateway and session["deviceId"] == device and session["token"].count(".") == 2
    assert session["vapidPublicKey"] == key

    # Our Web Push sink's payload onto showNotification (unsafe URLs dropped, like the page does).
    payload = {"title": "Ana mentioned you", "body": "Can you review?", "icon": "/static/icon.svg",
               "image": "javascript:alert(1)", "badge": "http://evil.example/b.png", "tag": nid,
               "data": {"notification_id": nid, "url": "/static/demo.html?from=push", "category": "mentions"},
               "actions": [{"action": "reply", "title": "Reply"}, {"action": "mute", "title": "Mute"}],
               "renotify": True, "requireInteraction": True}
    title, options = worker.evaluate("(p) => self.notifyflowSW.toNotification(p)", payload)
    assert title == "Ana mentioned you"
    assert options == {"body": "Can you review?", "tag": nid, "renotify": True, "requireInteraction": True,
                       "icon": f"{gateway}/static/icon.svg",
                       "data": {"notification_id": nid, "url": f"{gateway}/static/demo.html?from=push",
                                "category": "mentions"},
                       "actions": [{"action": "reply", "title": "Reply"}, {"action": "mute", "title": "Mute"}]}
    unsafe = worker.evaluate("(p) => self.notifyflowSW.toNotification(p)[1].data.url",
                             {"title": "x", "data": {"url": "javascript:alert(1)"}})
    assert unsafe is None

    shown = worker.evaluate("""async (p) => {
        await self.notifyflowSW.showPush(p);
        const shown = await self.registration.getNotifications({ tag: p.tag });
        return shown.map((n) => ({ title: n.title, body: n.body, tag: n.tag, data: n.data,
                                   requireInteraction: n.requireInteraction }));
    }""", payload)
    assert shown == [{"title": "Ana mentioned you", "body": "Can you review?", "tag": nid,
                      "requireInteraction": True,
                      "data": {"notification_id": nid, "url": f"{gateway}/static/demo.html?from=push",
                               "category": "mentions"}}]

    # A click reports `clicked` with the stored token (the gateway accepts it: 202 for the user's own).
    deliver(user, nid)
    clicked = worker.evaluate("(n) => self.notifyflowSW.handleClick({ data: n.data }, 'reply')", {"data": payload["data"]})
    assert clicked["reported"] is True and clicked["action"] == "reply"
    assert clicked["url"] == f"{gateway}/static/demo.html?from=push"
    # It reaches the flows as a push click (the page's toast of the same notification reports `seen`).
    reported = records_for(user, "notify.engagement", 2)
    assert [(e["notification_id"], e["action"], e["action_id"], e["device_id"]) for e in reported
            if e["channel"] == "push"] == [(nid, "clicked", "reply", device)]

    # Subscribing: the VAPID key goes to pushManager.subscribe, the subscription to POST /api/devices.
    page.get_by_role("button", name="Enable push").click()
    expect(page.locator("#push-status")).to_have_attribute("data-status", "subscribed")
    assert page.evaluate("window.__subscribed") == {"userVisibleOnly": True, "key": key_bytes}
    with psycopg.connect(stack.urls["DATABASE_URL"]) as connection:
        rows = connection.execute("SELECT device_id, platform, web_push, active FROM devices WHERE user_id = %s",
                                  [user]).fetchall()
    assert rows == [(device, "web", {"endpoint": "https://push.example/send/abc123", "p256dh": "BNcR-test-p256dh",
                                     "auth": "dGVzdC1hdXRo"}, True)]
