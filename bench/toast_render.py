"""The seed's <50 ms toast render, measured in Chromium on the demo page (bench.e2e --browser).

The page (`/?measure=1`) marks when each frame arrives and when each toast it shows reaches the next
animation frame; a burst of 50 notifications is published to the user's live channel at once, as
the in-app sink publishes them, with at most 5 toasts visible. A toast shown on arrival is measured
from its frame; one that waited for a free slot (by design: 5 at a time) from the moment it got it.
"""

from __future__ import annotations

import json
import shutil
import uuid
from datetime import UTC, datetime

import redis
from rich.console import Console

from connectors.redis import user_channel
from kernel.requests import DEFAULT_TENANT

BURST = 50


def toast_render_p99(gateway_url: str, redis_url: str, console: Console) -> float:
    from playwright.sync_api import sync_playwright

    user = f"toast-{uuid.uuid4().hex[:8]}"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), headless=True,
                                             args=["--no-sandbox", "--disable-background-networking"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            # Short toasts, so the queue drains within the run; the render cost is the same.
            page.goto(f"{gateway_url}/?user={user}&measure=1&normal=300")
            page.wait_for_function("document.documentElement.dataset.connection === 'open'", timeout=30_000)
            publish_burst(redis_url, user)
            page.wait_for_function(f"[...window.notifyflow.toastTimings.values()].filter(t => t.painted).length"
                                   f" >= {BURST}", timeout=60_000)
            timings = page.evaluate("[...window.notifyflow.toastTimings.values()]")
        finally:
            browser.close()
    latencies = sorted(t["painted"] - (t["shown"] if t["queued"] else t["frame"]) for t in timings)
    console.print(f"toasts: {len(latencies)} painted, {sum(t['queued'] for t in timings)} waited for a slot; "
                  f"render p50 {latencies[len(latencies) // 2]:.1f} ms")
    return latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]


def publish_burst(redis_url: str, user: str) -> None:
    client = redis.Redis.from_url(redis_url)
    with client.pipeline(transaction=False) as pipe:
        for n in range(BURST):
            notification = {"id": f"toast-{n}-{uuid.uuid4().hex[:6]}", "revision": 0, "title": f"Burst {n}",
                            "body": "one of fifty at once", "category": "messages", "priority": "normal",
                            "type": "info", "created_at": datetime.now(UTC).isoformat(), "merge_count": 1,
                            "html_body": "one of fifty at once", "image_url": None, "icon": None, "badge": None,
                            "actions": [], "deep_link": None, "payload": {}, "locale": "en", "variant": None,
                            "campaign_id": None, "presentation": None}
            pipe.publish(user_channel(DEFAULT_TENANT, user), json.dumps(
                {"event": "notification.created", "event_seq": n + 1, "notification": notification}))
        pipe.execute()
    client.close()
