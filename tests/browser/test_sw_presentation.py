"""The user's push sound and vibration as the service worker (web/sw.js) shows them: the Web Push
sink's `silent` and `vibrate` (sinks/webpush.py) reach showNotification in real headless Chromium,
which refuses a vibration pattern on a silent notification, so the worker never passes both."""

from __future__ import annotations

import pytest

from sinks.webpush import VIBRATION_PATTERN_MS

pytestmark = pytest.mark.timeout(60)

PATTERN = list(VIBRATION_PATTERN_MS)


def test_silent_and_vibrate_reach_show_notification(open_page, web_server):
    page = open_page(permissions=["notifications"])
    page.goto(f"{web_server}/toast-demo.html")  # any page of web/ lies in the worker's scope
    page.evaluate("navigator.serviceWorker.register('sw.js').then(() => navigator.serviceWorker.ready)")
    worker = page.context.service_workers[0] if page.context.service_workers else \
        page.context.wait_for_event("serviceworker")
    payloads = [
        {"title": "Both on", "tag": "on", "vibrate": PATTERN},
        {"title": "Both off", "tag": "off", "silent": True},
        {"title": "Vibration off", "tag": "quiet"},
        {"title": "Not ours", "tag": "odd", "silent": True, "vibrate": PATTERN},  # would make showNotification throw
        {"title": "Bad pattern", "tag": "bad", "vibrate": [200, "buzz"]},
    ]

    options = worker.evaluate("(ps) => ps.map((p) => self.notifyflowSW.toNotification(p)[1])", payloads)
    assert [{key: o[key] for key in ("silent", "vibrate") if key in o} for o in options] == [
        {"vibrate": PATTERN}, {"silent": True}, {}, {"silent": True}, {}]

    shown = worker.evaluate("""async (ps) => {
        for (const p of ps) await self.notifyflowSW.showPush(p);
        const shown = await self.registration.getNotifications();
        return Object.fromEntries(shown.map((n) => [n.tag, { silent: n.silent, vibrate: Array.from(n.vibrate) }]));
    }""", payloads)
    assert shown == {"on": {"silent": False, "vibrate": PATTERN}, "off": {"silent": True, "vibrate": []},
                     "quiet": {"silent": False, "vibrate": []}, "odd": {"silent": True, "vibrate": []},
                     "bad": {"silent": False, "vibrate": []}}
