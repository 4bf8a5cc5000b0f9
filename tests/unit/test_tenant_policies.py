"""kernel/policy.py: a tenant's category policies over the built-in ones, as the flow's steps use them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from flow_items import NOW, item_at, request

from flows.rate_limit import RateLimit
from kernel import policy
from kernel.policy import builtin, policy_for, with_settings


@pytest.fixture
def overrides():
    current = {}
    policy.use_overrides(lambda: current)
    yield current
    policy.use_overrides(dict)


def test_the_built_in_policies_are_the_defaults(overrides):
    assert policy_for("marketing", "acme") == builtin("marketing")
    assert policy_for("unknown-category", "acme") == policy.DEFAULT


def test_a_tenants_settings_replace_only_the_fields_it_sets(overrides):
    overrides["acme", "marketing"] = with_settings("marketing", {"per_day": 5, "escalation": {"high": [30]}})
    mine = policy_for("marketing", "acme")
    assert (mine.per_day, mine.escalation, mine.merge, mine.excess) == (5, {"high": (30,)}, "replace", "drop")
    assert mine.consent_required  # not a tenant's to change
    assert policy_for("marketing", "globex") == builtin("marketing")  # other tenants keep the defaults
    assert policy.escalation_delays("marketing", "high", scale=1, tenant="acme") == (30,)


def test_what_is_learned_acts_as_the_tenants_policy_says(overrides):
    overrides["acme", "social"] = with_settings("social", {"send_time": "optimal", "fatigue": False})
    assert policy.learns("social", "send_time", tenant="acme") and not policy.learns("social", "fatigue", tenant="acme")
    assert policy.learns("social", "fatigue", tenant="globex")  # other tenants keep the built-in policy
    assert not policy.learns("social", "send_time", "social:*", tenant="acme")  # the operator's switch wins
    assert not policy.learns("security", "send_time", tenant="acme")  # off by default for security


@pytest.mark.parametrize("settings, reason", [
    ({"merge": "squash"}, "merge must be one of count, replace, accumulate"),
    ({"excess": "queue"}, "excess must be one of digest, drop"),
    ({"per_hour": 0}, "per_hour must be a positive whole number"),
    ({"send_time": "later"}, "send_time must be one of now, optimal, off"),
    ({"fatigue": "no"}, "fatigue must be true or false"),
    ({"per_day": "3"}, "per_day must be a positive whole number"),
    ({"digestible": "yes"}, "digestible must be true or false"),
    ({"escalation": {"critical": [60]}}, "escalation must map high and/or normal"),
    ({"escalation": {"high": [-1]}}, "escalation must map high and/or normal"),
    ({"consent_required": False}, "consent_required is not a policy setting"),
])
def test_settings_that_make_no_sense_are_refused_with_the_reason(settings, reason):
    with pytest.raises(ValueError, match=reason):
        with_settings("messages", settings)


def test_the_rate_limit_step_follows_the_tenants_cap_as_it_is_now(overrides):
    step, state = RateLimit(), RateLimit().new_state()

    def send(n: int) -> list[dict]:
        req = request(category="ci", tenant="acme", metadata={"created_at": NOW + timedelta(seconds=n)})
        return step.process(state, [item_at("rate_limit", req)], NOW)

    assert [send(n)[0].get("to_digest") for n in range(3)] == [None, None, None]  # ci: 30 an hour built in
    overrides["acme", "ci"] = with_settings("ci", {"per_hour": 3, "excess": "drop"})
    assert send(3)[0]["reason"] == "ci cap of 3 per hour reached"
