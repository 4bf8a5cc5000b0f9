"""Closing the loop from the browser, against the live gateway: a toast on screen in a visible tab
is reported `seen` (it reaches notify.engagement), a toast in a hidden tab only once the tab is shown;
the user's presentation settings decide how long a toast stays; the demo address names its user."""

from __future__ import annotations

import uuid

import pytest
from gateway_harness import records_for
from playwright.sync_api import Page, expect
from test_center import open_demo, reports, toast

pytestmark = pytest.mark.timeout(60)

# A tab whose visibility the test decides (headless Chromium's tabs are always visible).
HIDEABLE_TAB = """
    window.__hidden = false;
    Object.defineProperty(document, 'hidden', { configurable: true, get: () => window.__hidden });
    Object.defineProperty(document, 'visibilityState', {
        configurable: true, get: () => (window.__hidden ? 'hidden' : 'visible') });
    window.setHidden = (value) => { window.__hidden = value; document.dispatchEvent(new Event('visibilitychange')); };
"""
STAYS = {"sound": True, "vibration": True, "auto_dismiss": False, "duration_seconds": 6}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def seen_ids(page: Page) -> list[str]:
    return [e["id"] for e in page.evaluate("window.notifyflowLog") if e["type"] == "toast:seen"]


def test_toasts_are_reported_seen_only_while_the_tab_is_visible(open_page, gateway, deliver):
    user, shown, waiting, gone, last = unique("sal"), unique("shown"), unique("waiting"), unique("gone"), unique("last")
    page = open_page()
    page.add_init_script(HIDEABLE_TAB)
    open_demo(page, gateway, user)
    with page.expect_request(reports("seen")) as seen:
        deliver(user, shown, title="Shown in a visible tab")
    assert seen.value.post_data_json["notification_id"] == shown and seen.value.response().status == 202

    page.evaluate("window.setHidden(true)")
    deliver(user, waiting, title="Shown in a hidden tab")
    deliver(user, gone, title="Gone before the tab was shown")
    expect(toast(page, waiting)).to_have_attribute("data-state", "paused")
    expect(toast(page, gone)).to_have_attribute("data-state", "paused")
    assert seen_ids(page) == [shown]  # displayed, but nobody could see them
    page.evaluate(f"window.notifyflow.toasts.dismiss({gone!r}, 'synced')")  # read on another device meanwhile

    with page.expect_request(reports("seen")) as later:
        page.evaluate("window.setHidden(false)")
    assert later.value.post_data_json["notification_id"] == waiting and later.value.response().status == 202
    with page.expect_request(reports("seen")) as again:
        deliver(user, last, title="Shown in a visible tab again")
    assert again.value.response().status == 202
    assert seen_ids(page) == [shown, waiting, last]
    reported = records_for(user, "notify.engagement", 3)
    assert [(e["notification_id"], e["action"], e["channel"], e["category"]) for e in reported] == [
        (shown, "seen", "in_app", "messages"), (waiting, "seen", "in_app", "messages"),
        (last, "seen", "in_app", "messages")]


def test_toasts_stay_as_long_as_the_users_presentation_settings_say(open_page, gateway, deliver):
    user, stays, longer, goes, critical = unique("tim"), unique("stays"), unique("longer"), unique("goes"), unique("c")
    page = open_demo(open_page(), gateway, user, normal=300, critical=300)
    deliver(user, stays, title="Stays until closed", presentation=STAYS)
    deliver(user, longer, title="Twenty seconds", presentation={**STAYS, "auto_dismiss": True, "duration_seconds": 20})
    deliver(user, critical, title="Critical keeps its own time", priority="critical", presentation=STAYS)
    deliver(user, goes, title="The page's own duration")  # no presentation settings: the page's 300 ms
    page.wait_for_function("""(ids) => ids.every((id) => window.notifyflowLog.some(
        (e) => e.type === 'toast:dismissed' && e.id === id && e.reason === 'timeout'))""", arg=[goes, critical])
    expect(toast(page, stays)).to_have_attribute("data-state", "displaying")
    expect(toast(page, stays)).to_have_attribute("data-persistent", "")
    assert toast(page, longer).evaluate("(el) => el.style.getPropertyValue('--toast-duration')") == "20000ms"
    toast(page, stays).get_by_role("button", name="Dismiss notification").click()
    expect(toast(page, stays)).to_have_count(0)


def test_the_demo_address_opens_the_page_of_the_user_it_names(open_page, gateway):
    page = open_page()
    page.goto(f"{gateway}/?user=bob")
    expect(page.locator("html")).to_have_attribute("data-connection", "open", timeout=10_000)
    expect(page.locator("#user-name")).to_have_text("bob")
    assert page.url == f"{gateway}/static/demo.html?user=bob"
    assert page.evaluate("window.notifyflow.user") == "bob"
