"""flows/preferences.py (what the user allows) and flows/channels.py (where it goes, and the fallback chain)."""

import pytest

from flows import channels, preferences
from kernel.keyed import Each
from kernel.topics import CHANNELS

from flow_items import category_settings, channel_settings, device, item_at, request, user_view, web_push_subscription

ALL = list(CHANNELS)


def allowed(req=None, **user):
    return item_at("apply_preferences", req, **user)


def dropped_reason(item):
    assert item["outcome"] == "dropped", item
    return item["reason"]


# --- preferences --------------------------------------------------------------------------------


def test_defaults_allow_every_channel_at_the_requested_priority():
    item = allowed(request(priority="high"))
    assert (item["priority"], item["channels"]) == ("high", ALL)
    assert "outcome" not in item


def test_global_switch_off_drops_everything_but_critical():
    assert dropped_reason(allowed(request(priority="high"), enabled=False)) == "notifications are turned off"
    critical = allowed(request(priority="critical", category="security"), enabled=False)
    assert (critical["priority"], critical["channels"]) == ("critical", ALL)


def test_category_off():
    user = {"categories": {"social": category_settings(enabled=False)}}
    assert dropped_reason(allowed(request(category="social"), **user)) == "category social is turned off"
    assert allowed(request(category="messages"), **user)["channels"] == ALL
    assert allowed(request(category="social", priority="critical"), **user)["channels"] == ALL


def test_category_channels_restrict_the_channels():
    user = {"categories": {"ci": category_settings(channels=["in_app", "email"])}}
    assert allowed(request(category="ci"), **user)["channels"] == ["email", "in_app"]
    assert allowed(request(category="general"), **user)["channels"] == ALL
    assert allowed(request(category="ci", priority="critical"), **user)["channels"] == ALL


def test_channel_off():
    user = {"channels": {"push": channel_settings(enabled=False), "sms": channel_settings(enabled=False)}}
    assert allowed(request(), **user)["channels"] == ["email", "webhook", "in_app"]
    assert allowed(request(priority="critical"), **user)["channels"] == ALL


def test_emergency_only_channel_carries_critical_only():
    user = {"channels": {"sms": channel_settings(emergency_only=True)}}
    assert allowed(request(priority="high"), **user)["channels"] == ["push", "email", "webhook", "in_app"]
    assert allowed(request(priority="critical"), **user)["channels"] == ALL


def test_channel_categories_list_limits_a_channel_to_those_categories():
    user = {"channels": {"email": channel_settings(categories=["billing", "security"])}}
    assert "email" in allowed(request(category="billing"), **user)["channels"]
    assert allowed(request(category="social"), **user)["channels"] == ["push", "sms", "webhook", "in_app"]


def test_every_channel_off_drops():
    user = {"channels": {c: channel_settings(enabled=False) for c in CHANNELS}}
    assert dropped_reason(allowed(request(category="ci"), **user)) == "every channel is turned off for ci"
    # Category channels that the channel settings all turn off: nothing left either.
    user = {"channels": {"email": channel_settings(enabled=False)},
            "categories": {"ci": category_settings(channels=["email"])}}
    assert dropped_reason(allowed(request(category="ci"), **user)) == "every channel is turned off for ci"


@pytest.mark.parametrize("req", [
    request(category="marketing", type="info"),
    request(category="promotions", type="marketing"),
    request(category="marketing", type="marketing", priority="critical"),
    request(category="promotions", type="marketing", priority="critical"),
], ids=["category", "type", "critical-category", "critical-type"])
def test_marketing_needs_consent_even_when_critical(req):
    assert dropped_reason(allowed(req)) == "no marketing consent"
    assert dropped_reason(allowed(req, marketing_consent=False, email="a@example.com")) == "no marketing consent"
    assert "outcome" not in allowed(req, marketing_consent=True)


def test_priority_override():
    user = {"categories": {"ci": category_settings(priority_override="low"),
                           "security": category_settings(priority_override="critical"),
                           "social": category_settings(priority_override="urgent")}}
    assert allowed(request(category="ci", priority="high"), **user)["priority"] == "low"
    assert allowed(request(category="social", priority="high"), **user)["priority"] == "high"  # not a priority
    # Raised to critical by the user: it passes their own opt-outs.
    item = allowed(request(category="security", priority="low"), enabled=False, **user)
    assert (item["priority"], item["channels"]) == ("critical", ALL)


def test_override_to_critical_still_needs_marketing_consent():
    user = {"categories": {"marketing": category_settings(priority_override="critical")}}
    assert dropped_reason(allowed(request(category="marketing"), **user)) == "no marketing consent"


def test_finished_items_are_passed_through_as_they_are():
    done = {"outcome": "deduplicated", "reason": "x"}
    [passed] = Each(preferences.apply).process({}, [done], None)
    assert passed is done


# --- channel selection --------------------------------------------------------------------------

PHONE = device("alice", "phone-1")
EMAIL = "alice@example.com"


def routed(req=None, **user):
    return item_at("select_channels", req, **user)


def route(req=None, **user):
    item = routed(req, **user)
    assert "outcome" not in item, item
    return item["route"]


def chain(*pairs):
    return [{"channel": c, "after_seconds": s} for c, s in pairs]


def test_online_normal_goes_to_the_app_first_and_escalates_if_unseen():
    # Online, only the toast goes now; unseen, the user is not looking after all: push, then email.
    assert route(request(), devices=[PHONE], online=True, email=EMAIL) == {
        "send": ["in_app"], "fallback": chain(("push", 300), ("email", 1800))}


def test_offline_normal_adds_the_best_interruptive_channel():
    assert route(request(), devices=[PHONE], email=EMAIL) == {
        "send": ["in_app", "push"], "fallback": chain(("email", 300))}


def test_fallback_chain_delays_grow_and_stop_at_an_hour():
    req = request(channels=["push", "email", "sms", "webhook", "in_app"])
    assert route(req, devices=[PHONE], email=EMAIL, phone="+15550100") == {
        "send": ["in_app", "push"], "fallback": chain(("webhook", 300), ("email", 1800), ("sms", 3600))}
    # Online: everything waits behind the toast; unseen, push comes first again and sms is last.
    assert route(req, devices=[PHONE], online=True, email=EMAIL, phone="+15550100") == {
        "send": ["in_app"],
        "fallback": chain(("push", 300), ("webhook", 1800), ("email", 3600), ("sms", 3600))}


def test_high_priority_sends_one_interruptive_channel_even_when_online_and_escalates_sooner():
    assert route(request(priority="high"), devices=[PHONE], online=True, email=EMAIL) == {
        "send": ["in_app", "email"], "fallback": chain(("push", 120))}
    assert route(request(priority="high"), devices=[PHONE], email=EMAIL) == {
        "send": ["in_app", "push"], "fallback": chain(("email", 120))}


def test_escalation_delays_come_from_the_category_policy_and_a_scale_shortens_them(monkeypatch):
    assert route(request(category="security"), devices=[PHONE], email=EMAIL)["fallback"] == chain(("email", 120))
    assert route(request(priority="low"), devices=[PHONE], email=EMAIL)["fallback"] == []
    monkeypatch.setenv("NOTIFYFLOW_ESCALATION_SCALE", "0.01")
    assert route(request(), devices=[PHONE], email=EMAIL)["fallback"] == chain(("email", 3))


def test_sms_is_worth_it_only_when_urgent():
    user = {"devices": [PHONE], "email": EMAIL, "phone": "+15550100"}
    assert route(request(priority="critical"), **user)["send"] == ["in_app", "sms", "push", "email"]
    assert route(request(priority="high"), **user) == {
        "send": ["in_app", "push"], "fallback": chain(("email", 120), ("sms", 900))}
    # Routine news never escalates to a text message, unless the sender asked for SMS.
    assert route(request(priority="normal"), **user) == {
        "send": ["in_app", "push"], "fallback": chain(("email", 300))}
    assert route(request(priority="normal", channels=["sms"]), **user) == {"send": ["sms"], "fallback": []}


def test_critical_goes_to_every_available_channel_at_once():
    assert route(request(priority="critical", category="security"), devices=[PHONE], email=EMAIL,
                 phone="+15550100") == {"send": ["in_app", "sms", "push", "email"], "fallback": []}
    assert route(request(priority="critical", category="security"), devices=[PHONE], online=True,
                 email=EMAIL) == {"send": ["in_app", "email", "push"], "fallback": []}


def test_critical_uses_channels_the_user_turned_off():
    user = {"devices": [PHONE], "email": EMAIL, "channels": {"push": channel_settings(enabled=False)}}
    assert route(request(priority="critical"), **user)["send"] == ["in_app", "push", "email"]
    assert route(request(priority="normal"), **user) == {"send": ["in_app", "email"], "fallback": []}


def test_low_priority_has_no_interruptions_and_no_fallback():
    assert route(request(priority="low"), devices=[PHONE], email=EMAIL) == {"send": ["in_app"], "fallback": []}
    assert route(request(priority="low"), devices=[PHONE], online=True) == {"send": ["in_app"], "fallback": []}


def test_low_priority_without_in_app_uses_the_best_channel_alone():
    assert route(request(priority="low", channels=["email", "push"]), devices=[PHONE], email=EMAIL) == {
        "send": ["push"], "fallback": []}


def test_push_needs_a_device_with_a_token_or_a_web_push_subscription():
    assert route(request(), email=EMAIL) == {"send": ["in_app", "email"], "fallback": []}
    no_address = device("alice", "desktop-1", platform="desktop", token=None)
    assert route(request(), devices=[no_address], email=EMAIL) == {"send": ["in_app", "email"], "fallback": []}
    browser = device("alice", "browser-1", platform="web", token=None, web_push=web_push_subscription())
    assert route(request(), devices=[browser], email=EMAIL)["send"] == ["in_app", "push"]


def test_email_needs_an_address_and_sms_a_phone():
    assert route(request(), devices=[PHONE]) == {"send": ["in_app", "push"], "fallback": []}
    assert route(request(priority="critical")) == {"send": ["in_app"], "fallback": []}


def test_webhook_only_when_the_sender_asks_for_it():
    everything = {"devices": [PHONE], "email": EMAIL, "phone": "+15550100"}
    assert "webhook" not in route(request(priority="critical"), **everything)["send"]
    assert route(request(channels=["webhook"]), **everything) == {"send": ["webhook"], "fallback": []}
    assert route(request(priority="critical", channels=["webhook", "in_app"]), **everything) == {
        "send": ["in_app", "webhook"], "fallback": []}


def test_hints_restrict_the_channels():
    assert route(request(channels=["email", "in_app"]), devices=[PHONE], email=EMAIL) == {
        "send": ["in_app", "email"], "fallback": []}
    assert route(request(channels=["push"]), devices=[PHONE], online=True, email=EMAIL) == {
        "send": ["push"], "fallback": []}


@pytest.mark.parametrize(("req", "user"), [
    (request(channels=["sms"]), {"devices": [PHONE], "email": EMAIL}),
    (request(channels=["push"]), {"email": EMAIL}),
    (request(category="ci"), {"categories": {"ci": category_settings(channels=["email"])}}),
], ids=["sms-without-phone", "push-without-device", "email-only-without-address"])
def test_nothing_that_can_reach_the_user_drops(req, user):
    item = routed(req, **user)
    assert (item["outcome"], item["reason"]) == ("dropped", "no allowed channel can reach the user")


def test_the_users_channel_order_breaks_ties():
    order = {c: channel_settings() for c in ("email", "sms", "webhook", "push")}
    assert route(request(), devices=[PHONE], email=EMAIL, channels=order) == {
        "send": ["in_app", "email"], "fallback": chain(("push", 300))}


def test_score():
    item = {"priority": "normal", "user": user_view(devices=[PHONE]), "request": request()}
    assert channels.score("push", item) == 3.0
    assert channels.score("sms", item) == 1.0
    assert channels.score("sms", {**item, "priority": "high"}) == 1.0
    assert channels.score("sms", {**item, "priority": "critical"}) == 3.5
    assert channels.score("push", {**item, "user": user_view(devices=[PHONE], online=True)}) == 1.5
    ordered = {**item, "user": user_view(channels={"email": channel_settings(), "push": channel_settings()})}
    assert channels.score("email", ordered) == 3.0 and channels.score("push", ordered) == 3.5


def test_finished_items_pass_channel_selection_untouched():
    done = {"outcome": "dropped", "reason": "x"}
    [passed] = Each(channels.select).process({}, [done], None)
    assert passed is done
