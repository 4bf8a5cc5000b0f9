"""axe-core (the npm package, installed by `make test`) audits the pages people see, in real Chromium
against the live gateway: the demo page with toasts showing, with the notification center open and with
the preferences panel open, and the unsubscribe confirmation page. None may have a violation."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from gateway_harness import in_app_job
from playwright.sync_api import Page, expect
from test_center import open_center, open_demo, toast

from kernel.unsubscribe import Unsubscribe, secret_from_env

pytestmark = pytest.mark.timeout(60)

AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"


def violations(page: Page) -> list[str]:
    """axe's violations on the page as it is now, one line per failing element."""
    if not AXE.exists():
        pytest.fail("no node_modules/axe-core: run `npm ci` (make test does)", pytrace=False)
    if not page.evaluate("typeof window.axe === 'object'"):
        page.add_script_tag(path=str(AXE))
    return page.evaluate("""async () => (await axe.run(document)).violations.flatMap((v) => v.nodes.map(
        (node) => `${v.impact} ${v.id}: ${node.target.join(' ')}: ${node.failureSummary}`))""")


def test_the_demo_page_with_toasts_center_and_preferences_has_no_violations(open_page, gateway, deliver):
    user, now = f"axe-{uuid.uuid4().hex[:8]}", datetime.now(UTC)
    page = open_demo(open_page(viewport={"width": 1280, "height": 1000}), gateway, user)
    # One of each look: read and unread, merged, with image, actions and link, every priority.
    deliver.many([
        in_app_job(user, "low", priority="low", category="digest", title="Weekly digest ready",
                   body="12 updates in #general", created_at=now - timedelta(minutes=50)),
        in_app_job(user, "mention", category="mentions", title="Ana mentioned you", body="Can you review?",
                   image_url="/static/icon.svg", deep_link="/static/demo.html", created_at=now - timedelta(minutes=3),
                   actions=[{"id": "reply", "title": "Reply", "action": "reply"}]),
        in_app_job(user, "build", priority="high", category="ci", title="Build failed", body="3 tests failing",
                   merge={"strategy": "count", "count": 3, "items": []}, created_at=now - timedelta(minutes=1)),
        in_app_job(user, "incident", priority="critical", category="security", title="Production incident",
                   body="API error rate above 5%", created_at=now,
                   actions=[{"id": "ack", "title": "Acknowledge", "action": "ack"}]),
    ])
    expect(page.locator(".toast")).to_have_count(4)
    expect(toast(page, "incident")).to_have_attribute("data-state", "displaying")
    assert violations(page) == []

    open_center(page)
    expect(page.locator(".nf-item")).to_have_count(4)
    page.locator('.nf-item[data-id="low"]').get_by_role("button", name="Mark as read").click()
    expect(page.locator('.nf-item[data-id="low"]')).to_have_attribute("data-read", "true")
    expect(page.locator(".nf-read-all")).to_be_enabled()
    assert violations(page) == []

    page.keyboard.press("Escape")
    page.get_by_role("button", name="Preferences").click()
    expect(page.locator("dialog.nf-prefs form")).to_have_attribute("aria-busy", "false")
    assert violations(page) == []


def test_the_unsubscribe_page_has_no_violations(open_page, gateway):
    link = Unsubscribe.for_email(f"axe-{uuid.uuid4().hex[:8]}", "marketing", "n-1", datetime.now(UTC))
    page = open_page(bypass_csp=True)  # the page allows no scripts; axe is the test's, not the page's
    page.goto(link.link(f"{gateway}/unsubscribe", secret_from_env()))
    expect(page.get_by_role("button", name="Unsubscribe")).to_be_visible()
    assert violations(page) == []
