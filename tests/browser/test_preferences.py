"""The preferences panel of the demo page against the live gateway: a save round trip through
PUT /api/preferences (and back after a reload), and the gateway's 400 text shown as it is."""

from __future__ import annotations

import uuid

import httpx
import pytest
from gateway_harness import GATEWAY_SECRET
from playwright.sync_api import Page, expect

from gateway.auth import issue_token

pytestmark = pytest.mark.timeout(60)


def open_preferences(page: Page, gateway: str, user: str):
    page.goto(f"{gateway}/static/demo.html?user={user}")
    expect(page.locator("html")).to_have_attribute("data-connection", "open", timeout=10_000)
    page.get_by_role("button", name="Preferences").click()
    dialog = page.locator("dialog.nf-prefs")
    expect(dialog).to_be_visible()
    expect(dialog.locator("form")).to_have_attribute("aria-busy", "false")
    return dialog


def saved_preferences(gateway: str, user: str) -> dict:
    headers = {"authorization": f"Bearer {issue_token(user, GATEWAY_SECRET)}"}
    return httpx.get(f"{gateway}/api/preferences", headers=headers, timeout=10).json()


def test_preferences_save_round_trip_and_gateway_error(open_page, gateway):
    user = f"ana-{uuid.uuid4().hex[:10]}"
    # The 400 below is provoked on purpose: Chromium logs the failed request itself.
    page = open_page(allow=[r"status of 400"])
    dialog = open_preferences(page, gateway, user)
    pref = lambda key: dialog.locator(f'[data-pref="{key}"]')  # noqa: E731

    # Defaults: everything on, no quiet hours, no digest, no consent; the zone list is the browser's.
    expect(pref("enabled")).to_be_checked()
    expect(pref("quiet.enabled")).not_to_be_checked()
    expect(pref("quiet.timezone")).to_be_disabled()
    assert pref("quiet.timezone").locator("option").count() > 300  # Intl.supportedValuesOf('timeZone')
    expect(pref("marketing_consent")).not_to_be_checked()

    pref("quiet.enabled").check()
    pref("quiet.start_time").fill("22:30")
    pref("quiet.end_time").fill("06:15")
    pref("quiet.timezone").select_option("Europe/Paris")
    pref("quiet.days.mon").check()
    pref("quiet.days.fri").check()
    pref("digest.enabled").check()
    pref("digest.frequency").select_option("weekly")
    pref("digest.time").fill("08:00")
    pref("digest.timezone").select_option("America/New_York")
    pref("channel.sms.enabled").uncheck()
    pref("channel.push.emergency_only").check()
    pref("channel.email.frequency").select_option("daily")
    pref("channel.email.categories").fill("security, billing")
    pref("category.marketing.enabled").uncheck()
    pref("category.security.priority_override").select_option("critical")
    pref("category.messages.channel.in_app").check()
    pref("category.messages.channel.push").check()
    pref("marketing_consent").check()
    pref("email").fill("ana@example.com")
    pref("timezone").select_option("Europe/Berlin")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog.locator(".nf-prefs-status")).to_have_text("Saved")
    expect(dialog.locator(".nf-prefs-error")).to_have_text("")

    saved = saved_preferences(gateway, user)
    assert saved["quiet_hours"] == {"start_time": "22:30", "end_time": "06:15", "timezone": "Europe/Paris",
                                    "days": ["mon", "fri"]}
    assert saved["digest"] == {"enabled": True, "frequency": "weekly", "time": "08:00", "timezone": "America/New_York"}
    assert saved["channels"] == {
        "push": {"enabled": True, "categories": [], "frequency": None, "emergency_only": True},
        "email": {"enabled": True, "categories": ["security", "billing"], "frequency": "daily", "emergency_only": False},
        "sms": {"enabled": False, "categories": [], "frequency": None, "emergency_only": False},
    }
    assert saved["categories"] == {
        "marketing": {"enabled": False, "channels": [], "priority_override": None},
        "messages": {"enabled": True, "channels": ["in_app", "push"], "priority_override": None},
        "security": {"enabled": True, "channels": [], "priority_override": "critical"},
    }
    assert (saved["marketing_consent"], saved["email"], saved["timezone"], saved["enabled"]) == (
        True, "ana@example.com", "Europe/Berlin", True)

    # Loaded again, the form shows what the gateway stored. (One navigation, not reload() + goto():
    # a page leaving while its live connection is still subscribing makes gateway/hub.py's reader
    # task die on a cancelled future, which stops live events for every user of that gateway.)
    dialog = open_preferences(page, gateway, user)
    expect(pref("quiet.enabled")).to_be_checked()
    expect(pref("quiet.start_time")).to_have_value("22:30")
    expect(pref("quiet.timezone")).to_have_value("Europe/Paris")
    expect(pref("quiet.days.fri")).to_be_checked()
    expect(pref("quiet.days.tue")).not_to_be_checked()
    expect(pref("digest.frequency")).to_have_value("weekly")
    expect(pref("channel.sms.enabled")).not_to_be_checked()
    expect(pref("category.security.priority_override")).to_have_value("critical")
    expect(pref("marketing_consent")).to_be_checked()
    expect(pref("timezone")).to_have_value("Europe/Berlin")

    # A zone the gateway does not know: its 400 text is shown, and nothing changes.
    pref("quiet.timezone").evaluate("""(select) => {
        const option = document.createElement('option');
        option.value = option.textContent = 'Mars/Olympus';
        select.append(option);
        select.value = 'Mars/Olympus';
    }""")
    dialog.get_by_role("button", name="Save").click()
    error = dialog.get_by_role("alert")
    expect(error).to_have_text("quiet_hours.timezone: unknown timezone 'Mars/Olympus'")
    expect(dialog.locator(".nf-prefs-status")).to_have_text("")
    assert saved_preferences(gateway, user)["quiet_hours"]["timezone"] == "Europe/Paris"


def test_preferences_saved_on_one_device_show_on_another(open_page, gateway):
    user = f"ana-{uuid.uuid4().hex[:10]}"
    laptop = open_preferences(open_page(), gateway, user)
    phone = open_preferences(open_page(), gateway, user)
    laptop.locator('[data-pref="marketing_consent"]').check()
    laptop.get_by_role("button", name="Save").click()
    expect(laptop.locator(".nf-prefs-status")).to_have_text("Saved")
    # preferences.updated over the phone's live connection (no unsaved edits there).
    expect(phone.locator('[data-pref="marketing_consent"]')).to_be_checked()


def test_presentation_settings_save_and_the_gateway_bounds_the_toast_duration(open_page, gateway):
    user = f"ana-{uuid.uuid4().hex[:10]}"
    page = open_page(allow=[r"status of 400"])  # the out-of-range duration below, on purpose
    dialog = open_preferences(page, gateway, user)
    pref = lambda key: dialog.locator(f'[data-pref="{key}"]')  # noqa: E731
    # null presentation: the defaults, shown as such
    expect(pref("presentation.sound")).to_be_checked()
    expect(pref("presentation.vibration")).to_be_checked()
    expect(pref("presentation.auto_dismiss")).to_be_checked()
    expect(pref("presentation.duration_seconds")).to_have_value("6")

    pref("presentation.sound").uncheck()
    pref("presentation.duration_seconds").fill("45")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog.get_by_role("alert")).to_have_text("presentation.duration_seconds must be from 3 to 30, not 45")
    assert saved_preferences(gateway, user)["presentation"] is None

    pref("presentation.duration_seconds").fill("12")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog.locator(".nf-prefs-status")).to_have_text("Saved")
    assert saved_preferences(gateway, user)["presentation"] == {
        "sound": False, "vibration": True, "auto_dismiss": True, "duration_seconds": 12}

    pref("presentation.auto_dismiss").uncheck()  # toasts stay until closed: no duration to set
    expect(pref("presentation.duration_seconds")).to_be_disabled()
    dialog.get_by_role("button", name="Save").click()
    expect(dialog.locator(".nf-prefs-status")).to_have_text("Saved")
    assert saved_preferences(gateway, user)["presentation"]["auto_dismiss"] is False
