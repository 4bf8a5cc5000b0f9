"""The demo page (web/demo.html) against the live gateway in real headless Chromium: toasts and the
bell's notification center fed by the in-app sink, merged updates in place, read state synced
across devices, XSS-safe rendering, infinite scroll, mark all read, filters and archive,
reconnect with replay and the SSE fallback (SEED.md, "Frontend Notification Components")."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from gateway_harness import GATEWAY_SECRET, in_app_job
from playwright.sync_api import Page, expect

from gateway.auth import issue_token

pytestmark = pytest.mark.timeout(60)

LONG = 30_000  # ms: toasts that do not time out during a test
XSS = "<img src=x onerror=window.pwned=1>"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def open_demo(page: Page, gateway: str, user: str, **query) -> Page:
    params = {"user": user, "low": LONG, "normal": LONG, "high": LONG, "critical": LONG, **query}
    page.goto(f"{gateway}/static/demo.html?" + "&".join(f"{k}={v}" for k, v in params.items()))
    expect(page.locator("html")).to_have_attribute("data-connection", "open", timeout=10_000)
    return page


def api(gateway: str, user: str) -> httpx.Client:
    return httpx.Client(base_url=gateway, headers={"authorization": f"Bearer {issue_token(user, GATEWAY_SECRET)}"},
                        timeout=10)


def bell(page: Page):
    return page.locator(".nf-bell")


def toast(page: Page, notification_id: str):
    return page.locator(f'.toast[data-toast-id="{notification_id}"]')


def item(page: Page, notification_id: str):
    return page.locator(f'.nf-item[data-id="{notification_id}"]')


def open_center(page: Page) -> None:
    if bell(page).get_attribute("aria-expanded") != "true":
        bell(page).click()
    expect(page.locator(".nf-panel")).to_be_visible()
    expect(page.locator(".nf-list")).to_have_attribute("aria-busy", "false")


def reports(action: str):
    """Matches the page's engagement report of `action` (toasts also report `seen` as they show)."""
    return lambda r: r.url.endswith("/api/engagement") and r.method == "POST" and r.post_data_json["action"] == action


def expect_unread(page: Page, count: int) -> None:
    label = f"Notifications, {count} unread" if count else "Notifications, none unread"
    expect(bell(page)).to_have_attribute("aria-label", label)
    badge = page.locator(".nf-badge")
    if count:
        expect(badge).to_be_visible()
        expect(badge).to_have_text(str(count))
    else:
        expect(badge).to_be_hidden()


def test_new_notification_shows_as_toast_and_in_center_with_badge(open_page, gateway, deliver):
    user, nid = unique("ana"), unique("n")
    page = open_demo(open_page(), gateway, user)
    expect_unread(page, 0)

    deliver(user, nid, title="Bob sent you a message", body="Lunch?", category="messages")
    el = toast(page, nid)
    expect(el.locator(".toast-title")).to_have_text("Bob sent you a message")
    expect(el.locator(".toast-body")).to_have_text("Lunch?")
    expect(el).to_have_attribute("data-state", "displaying")
    expect_unread(page, 1)

    open_center(page)
    row = item(page, nid)
    expect(row).to_have_attribute("data-read", "false")
    expect(row.locator(".nf-item-title")).to_have_text("Bob sent you a message")
    expect(row.locator(".nf-item-body")).to_have_text("Lunch?")
    expect(row.locator(".nf-item-category")).to_have_text("messages")


def test_merged_update_updates_the_toast_in_place(open_page, gateway, deliver):
    user, nid = unique("ana"), unique("n")
    page = open_demo(open_page(), gateway, user)
    deliver(user, nid, title="#design: 1 new message", body="Ana: first draft")
    el = toast(page, nid)
    expect(el.locator(".toast-title")).to_have_text("#design: 1 new message")
    expect(el.locator(".toast-badge")).to_have_count(0)
    handle = el.element_handle()

    # The flow's merge step: same notification id, revision 1, merge count 2.
    deliver(user, nid, revision=1, merge={"strategy": "count", "count": 2, "items": []},
            title="#design: 2 new messages", body="Ana: second draft")
    expect(el.locator(".toast-badge")).to_have_text("2")
    expect(el.locator(".toast-title")).to_have_text("#design: 2 new messages")
    expect(el.locator(".toast-body")).to_have_text("Ana: second draft")
    expect(page.locator(".toast")).to_have_count(1)
    assert handle.evaluate("(e) => e.isConnected && e.dataset.toastId") == nid  # the same element, refilled
    toast_log = [(e["type"], e["id"]) for e in page.evaluate("window.notifyflowLog")
                 if e["type"].startswith("toast:")]
    assert toast_log == [("toast:shown", nid), ("toast:seen", nid), ("toast:updated", nid)]  # seen once

    expect_unread(page, 1)  # still one notification, not two
    open_center(page)
    expect(page.locator(".nf-item")).to_have_count(1)
    row = item(page, nid)
    expect(row).to_have_attribute("data-revision", "1")
    expect(row.locator(".nf-item-count")).to_have_text("2")
    expect(row.locator(".nf-item-title")).to_have_text("#design: 2 new messages")


def test_read_state_syncs_between_two_devices(open_page, gateway, deliver):
    user, first, second = unique("ana"), unique("n1"), unique("n2")
    laptop = open_demo(open_page(), gateway, user)
    phone = open_demo(open_page(), gateway, user)
    now = datetime.now(UTC)
    deliver(user, first, title="First", created_at=now - timedelta(seconds=1))
    deliver(user, second, title="Second", created_at=now)
    for page in (laptop, phone):
        expect_unread(page, 2)
        open_center(page)
        expect(page.locator(".nf-item")).to_have_count(2)

    # Read on the laptop: the phone's badge, item and toast follow.
    toggle = item(laptop, first).locator(".nf-toggle-read")
    expect(toggle).to_have_attribute("aria-label", "Mark as read")
    toggle.click()
    expect(item(laptop, first)).to_have_attribute("data-read", "true")
    expect(item(phone, first)).to_have_attribute("data-read", "true")
    expect_unread(phone, 1)
    expect_unread(laptop, 1)
    expect(toast(phone, first)).to_have_count(0)  # read elsewhere: no longer news here
    expect(toast(phone, second)).to_have_count(1)

    # And back: unread on the phone.
    item(phone, first).get_by_role("button", name="Mark as unread").click()
    expect(item(laptop, first)).to_have_attribute("data-read", "false")
    expect_unread(laptop, 2)
    expect_unread(phone, 2)


def test_xss_payload_renders_as_text(open_page, gateway, deliver):
    user, nid = unique("ana"), unique("n")
    page = open_demo(open_page(), gateway, user)
    deliver(user, nid, title=XSS, body=XSS, html_body="<img src=x onerror=window.pwned=2><script>window.pwned=3</script>",
            category='"><img src=x onerror=window.pwned=4>', image_url="javascript:window.pwned=5",
            deep_link="javascript:window.pwned=6", icon="javascript:window.pwned=7",
            actions=[{"id": "a", "title": XSS, "action": "javascript:window.pwned=8"}])
    el = toast(page, nid)
    expect(el.locator(".toast-title")).to_have_text(XSS)
    expect(el.locator(".toast-body")).to_have_text(XSS)
    expect(el.locator(".toast-action")).to_have_text(XSS)

    open_center(page)
    row = item(page, nid)
    expect(row.locator(".nf-item-title")).to_have_text(XSS)
    expect(row.locator(".nf-item-body")).to_have_text(XSS)
    expect(row.locator(".nf-item-category")).to_have_text('"><img src=x onerror=window.pwned=4>')
    expect(row.locator(".nf-action")).to_have_text(XSS)
    row.locator(".nf-action").click()  # a javascript: action and deep link are never followed
    expect(row).to_have_attribute("data-read", "true")

    expect(page.locator("img")).to_have_count(0)
    expect(page.locator("script:not([src])")).to_have_count(0)
    expect(page.locator('a[href^="javascript"]')).to_have_count(0)
    page.wait_for_timeout(300)
    assert page.evaluate("typeof window.pwned") == "undefined"
    assert page.url.startswith(f"{gateway}/static/demo.html")


def test_infinite_scroll_loads_the_next_pages(open_page, gateway, deliver):
    user = unique("ana")
    now = datetime.now(UTC)
    ids = [f"{user}-item-{i:02d}" for i in range(45)]  # newest first
    deliver.many([in_app_job(user, nid, title=f"Item {i:02d}", created_at=now - timedelta(minutes=i))
                  for i, nid in enumerate(ids)])
    page = open_demo(open_page(), gateway, user)
    expect_unread(page, 45)
    expect(page.locator(".nf-badge")).to_have_text("45")

    open_center(page)
    items = page.locator(".nf-item")
    expect(items).to_have_count(20)
    scroller = page.locator(".nf-scroll")
    scroller.evaluate("(e) => { e.scrollTop = e.scrollHeight; }")
    expect(items).to_have_count(40)
    scroller.evaluate("(e) => { e.scrollTop = e.scrollHeight; }")
    expect(items).to_have_count(45)
    expect(page.locator(".nf-loading")).to_be_hidden()
    assert page.eval_on_selector_all(".nf-item", "els => els.map((e) => e.dataset.id)") == ids
    assert page.evaluate("window.notifyflow.center.nextCursor") is None


def test_mark_all_read_zeroes_the_badge(open_page, gateway, deliver):
    user = unique("ana")
    deliver.many([in_app_job(user, unique("n"), title=f"Note {i}") for i in range(3)])
    page = open_demo(open_page(), gateway, user)
    expect_unread(page, 3)
    open_center(page)
    expect(page.locator('.nf-item[data-read="false"]')).to_have_count(3)

    page.get_by_role("button", name="Mark all read").click()
    expect_unread(page, 0)
    expect(page.locator('.nf-item[data-read="true"]')).to_have_count(3)
    expect(page.get_by_role("button", name="Mark all read")).to_be_disabled()
    with api(gateway, user) as client:
        assert client.get("/api/notifications/unread-count").json() == {"total": 0, "by_category": {}}


def test_filters_by_category_and_state_and_archive(open_page, gateway, deliver):
    user = unique("ana")
    now = datetime.now(UTC)
    m1, s1, m2 = unique("m1"), unique("s1"), unique("m2")
    deliver.many([in_app_job(user, m1, category="messages", title="M1", created_at=now - timedelta(seconds=3)),
                  in_app_job(user, s1, category="security", title="S1", created_at=now - timedelta(seconds=2)),
                  in_app_job(user, m2, category="messages", title="M2", created_at=now - timedelta(seconds=1))])
    page = open_demo(open_page(), gateway, user)
    open_center(page)
    ids = lambda: page.eval_on_selector_all(".nf-item", "els => els.map((e) => e.dataset.id)")  # noqa: E731
    expect(page.locator(".nf-item")).to_have_count(3)

    page.locator(".nf-category-filter select").select_option("security")
    expect(page.locator(".nf-item")).to_have_count(1)
    assert ids() == [s1]
    page.locator(".nf-category-filter select").select_option("")
    expect(page.locator(".nf-item")).to_have_count(3)

    item(page, m1).locator(".nf-toggle-read").click()
    expect(item(page, m1)).to_have_attribute("data-read", "true")
    page.locator('.nf-state-filter button[data-state="unread"]').click()
    expect(page.locator(".nf-item")).to_have_count(2)
    assert ids() == [m2, s1]
    page.locator('.nf-state-filter button[data-state="read"]').click()
    expect(page.locator(".nf-item")).to_have_count(1)
    assert ids() == [m1]

    page.locator('.nf-state-filter button[data-state="inbox"]').click()
    expect(page.locator(".nf-item")).to_have_count(3)
    item(page, m2).get_by_role("button", name="Archive").click()
    expect(item(page, m2)).to_have_count(0)
    expect(page.locator(".nf-status")).to_have_text("Archived")
    expect_unread(page, 1)  # an archived notification is no longer unread
    page.locator('.nf-state-filter button[data-state="archived"]').click()
    expect(page.locator(".nf-item")).to_have_count(1)
    expect(item(page, m2).get_by_role("button", name="Archive")).to_have_count(0)


def test_engagement_from_toast_and_center(open_page, gateway, deliver):
    user, nid, other = unique("ana"), unique("n"), unique("n")
    page = open_demo(open_page(), gateway, user)
    deliver(user, nid, title="Deploy finished", actions=[{"id": "ack", "title": "Acknowledge", "action": "ack"}])
    with page.expect_request(reports("clicked")) as clicked:
        toast(page, nid).get_by_role("button", name="Acknowledge").click()
    assert clicked.value.post_data_json | {"device_id": None} == {
        "notification_id": nid, "action": "clicked", "action_id": "ack", "channel": "in_app", "device_id": None}
    assert clicked.value.response().status == 202
    expect(toast(page, nid)).to_have_count(0)
    expect_unread(page, 0)  # acting on it read it

    link = f"/static/demo.html?user={user}&from=link"
    deliver(user, other, title="Open me", deep_link=link)
    with page.expect_request(reports("dismissed")) as dismissed:
        toast(page, other).get_by_role("button", name="Dismiss notification").click()
    assert dismissed.value.post_data_json["action"] == "dismissed"

    open_center(page)
    title = item(page, other).locator("a.nf-item-title")
    expect(title).to_have_attribute("href", f"{gateway}{link}")
    with page.expect_request(reports("opened")) as opened:
        title.click()
    assert opened.value.post_data_json["action"] == "opened"
    page.wait_for_url(f"{gateway}{link}")
    expect(page.locator("html")).to_have_attribute("data-connection", "open", timeout=10_000)
    expect_unread(page, 0)


def test_reconnect_resumes_after_the_last_event(open_page, gateway, deliver):
    user, seen, missed = unique("ana"), unique("seen"), unique("missed")
    page = open_page()
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    open_demo(page, gateway, user)
    deliver(user, seen, title="Seen live")
    expect(toast(page, seen)).to_have_count(1)
    last = page.evaluate("window.notifyflow.client.lastEventSeq")
    assert isinstance(last, int) and last > 0

    page.evaluate("window.notifyflow.client.close()")
    expect(page.locator("html")).to_have_attribute("data-connection", "closed")
    deliver(user, missed, title="Sent while offline")
    with api(gateway, user) as client:
        assert client.post(f"/api/notifications/{seen}/read").status_code == 200  # on another device
    page.evaluate("window.notifyflow.client.connect()")

    expect(toast(page, missed).locator(".toast-title")).to_have_text("Sent while offline")
    expect(toast(page, seen)).to_have_count(0)
    expect_unread(page, 1)
    assert f"last_event_id={last}" in sockets[-1]
    replayed = [(e["type"], e["id"]) for e in page.evaluate("window.notifyflowLog") if e["type"] == "notification.sync"]
    assert replayed == [("notification.sync", missed), ("notification.sync", seen)]

    # The gateway asking for a resync: reconnect at once from the last event, reload the center.
    resyncs = page.evaluate("""() => new Promise((resolve) => {
        const client = window.notifyflow.client;
        const off = client.on('resync', (e) => { off(); resolve(e.lastEventSeq); });
        client._dispatch({ event: 'resync' });
    })""")
    assert resyncs == page.evaluate("window.notifyflow.client.lastEventSeq")
    expect(page.locator("html")).to_have_attribute("data-connection", "open")
    later = unique("later")
    deliver(user, later, title="After the resync")
    expect(toast(page, later)).to_have_count(1)


def test_falls_back_to_sse_when_websocket_fails(open_page, gateway, deliver):
    user, nid = unique("ana"), unique("n")
    page = open_page()
    page.add_init_script("""
        window.WebSocket = class {  // a network where WebSocket never gets through
            constructor(url) { this.url = url; this.readyState = 3; setTimeout(() => this.onclose?.({ code: 1006 }), 0); }
            send() {} close() {}
        };
        window.WebSocket.OPEN = 1;
    """)
    open_demo(page, gateway, user)
    expect(page.locator("#connection")).to_have_attribute("data-transport", "sse")
    deliver(user, nid, title="Over SSE")
    expect(toast(page, nid).locator(".toast-title")).to_have_text("Over SSE")
    expect_unread(page, 1)
    with api(gateway, user) as client:
        client.post(f"/api/notifications/{nid}/read")
    expect_unread(page, 0)
    assert page.evaluate("window.notifyflow.client.lastEventSeq") > 0


def test_screenshot_of_demo_with_toasts_and_open_center(open_page, gateway, deliver, artifacts_dir):
    user = "alice-" + uuid.uuid4().hex[:6]
    page = open_demo(open_page(viewport={"width": 1280, "height": 1000}), gateway, user)  # room for both
    now = datetime.now(UTC)
    deliver.many([
        in_app_job(user, unique("d"), priority="low", category="digest", title="Weekly digest ready",
                   body="12 updates in #general", created_at=now - timedelta(minutes=50)),
        in_app_job(user, unique("m"), category="mentions", title="Ana mentioned you",
                   body="Can you review the rollout plan?", image_url="/static/icon.svg",
                   deep_link="/static/demo.html", created_at=now - timedelta(minutes=3),
                   actions=[{"id": "reply", "title": "Reply", "action": "reply"},
                            {"id": "mute", "title": "Mute", "action": "mute"}]),
        in_app_job(user, unique("b"), priority="high", category="ci", title="Build failed",
                   body="main #1873: 3 tests failing", merge={"strategy": "count", "count": 3, "items": []},
                   created_at=now - timedelta(minutes=1)),
        in_app_job(user, unique("c"), priority="critical", category="security", title="Production incident",
                   body="API error rate above 5%", created_at=now,
                   actions=[{"id": "ack", "title": "Acknowledge", "action": "ack"}]),
    ])
    expect(page.locator(".toast")).to_have_count(4)
    expect_unread(page, 4)
    open_center(page)
    expect(page.locator(".nf-item")).to_have_count(4)
    expect(page.locator(".nf-item-image")).to_have_count(1)
    page.wait_for_function("document.getAnimations().every((a) => a.playState === 'finished' || "
                           "a.animationName === 'toast-countdown')")
    page.wait_for_function("[...document.images].every((i) => i.complete)")
    path = artifacts_dir / "demo.png"
    page.screenshot(path=str(path))
    assert path.stat().st_size > 5_000
