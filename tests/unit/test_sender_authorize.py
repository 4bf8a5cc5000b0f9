"""kernel/grants.py and flows/authorize.py: what a sender may send in a tenant, and the authorize step."""

from __future__ import annotations

import pytest
from flow_items import NOW, encode, fan_out, request

from flows.authorize import authorize
from flows.ingestion import IngestionLimit, IngestionLimits
from flows.intake import Intake
from kernel.grants import AUDIENCE_KINDS, Grant, audience_kinds, grant_for, refusal

INTAKE = Intake()


def sent_by(sender: str, tenant: str = "acme", req: dict | None = None, **fields) -> dict:
    req = req or request(tenant=tenant, **fields)
    req["metadata"]["source_app"] = sender
    return req


def grants(*given: Grant) -> dict:
    return {(g.tenant, g.source_app): g for g in given}


AUTH = Grant("acme", "auth", ("security",), "critical", ("user",))
CHAT = Grant("acme", "chat", ("messages",), "high", ("user", "list"), per_minute=100)


def test_a_sender_without_a_grant_is_refused():
    assert refusal(grants(AUTH), sent_by("billing")) == "sender billing has no grant in tenant acme"
    assert refusal({}, sent_by("auth", category="security")) == "sender auth has no grant in tenant acme"


@pytest.mark.parametrize("req, reason", [
    (sent_by("chat", category="security"), "sender chat of tenant acme may not send category security "
                                           "(granted: messages)"),
    (sent_by("chat", category="messages", priority="critical"),
     "sender chat of tenant acme may not send priority critical (granted up to high)"),
    (sent_by("chat", req=fan_out(segment="beta", tenant="acme", category="messages")),
     "sender chat of tenant acme may not send to a segment audience (granted: user, list)"),
    (sent_by("chat", req=fan_out(["bob"], topic="releases", tenant="acme", category="messages")),
     "sender chat of tenant acme may not send to a topic audience (granted: user, list)"),
], ids=["category", "priority", "segment", "topic"])
def test_the_reason_names_what_was_refused(req, reason):
    assert refusal(grants(AUTH, CHAT), req) == reason


def test_what_is_granted_goes_through():
    assert refusal(grants(AUTH, CHAT), sent_by("auth", category="security", priority="critical")) is None
    assert refusal(grants(AUTH, CHAT), sent_by("chat", req=fan_out(["bob", "carol"], tenant="acme",
                                                                    category="messages"))) is None


def test_the_most_specific_grant_wins_and_wildcards_fill_in():
    anyone = Grant("*", "*", None, "normal", AUDIENCE_KINDS)
    tenant_wide = Grant("acme", "*", None, "high", AUDIENCE_KINDS)
    everywhere = Grant("*", "auth", ("security",), "critical", ("user",))
    given = grants(anyone, tenant_wide, everywhere, CHAT)
    assert grant_for(given, "acme", "chat") == CHAT
    assert grant_for(given, "acme", "billing") == tenant_wide
    assert grant_for(given, "globex", "auth") == everywhere
    assert grant_for(given, "globex", "billing") == anyone
    # A specific grant narrows the wildcard: chat may not send security although acme's '*' may.
    assert refusal(given, sent_by("chat", category="security")).startswith("sender chat of tenant acme may not")
    assert refusal(given, sent_by("billing", category="security")) is None


def test_audience_kinds_of_a_request():
    assert audience_kinds(request()) == ["user"]
    assert audience_kinds(fan_out(["a"], segment="s", topic="t")) == ["list", "segment", "topic"]


@pytest.mark.parametrize("fields, reason", [
    ({"max_priority": "urgent"}, "priority 'urgent' is not one of low, normal, high, critical"),
    ({"audiences": ("user", "everyone")}, "audience kind 'everyone' is not one of user, list, segment, topic"),
    ({"audiences": ()}, "a grant needs at least one audience kind"),
    ({"categories": ()}, "categories must be named (or left out for any category)"),
    ({"per_minute": 0}, "the rate must be a positive number a minute"),
    ({"tenant": " "}, "tenant and sender must not be empty"),
])
def test_a_grant_that_makes_no_sense_is_refused(fields, reason):
    with pytest.raises(ValueError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        Grant(**{"tenant": "acme", "source_app": "chat", **fields})


def item_from(req: dict, second: int = 1000, n: int = 0) -> dict:
    return INTAKE.item("notify.events", 0, n, b"alice", encode(req), NOW, timestamp=(1, second * 1000))


def test_the_authorize_step_dead_letters_with_the_reason_and_reads_grants_as_they_are_now():
    current = {}
    item = item_from(sent_by("auth", category="security", priority="critical"))
    refused = authorize(item, grants=lambda: current)
    assert (refused["outcome"], refused["stage"], refused["reason"]) == (
        "dead_letter", "authorize", "sender auth has no grant in tenant acme")
    assert refused["request"]["tenant"] == "acme"  # still keyed by its tenant downstream
    current.update(grants(AUTH))  # granted while the flow runs: the next request goes through
    passed = authorize(item, grants=lambda: current)
    assert "outcome" not in passed and passed["sender_per_minute"] is None
    finished = {**item, "outcome": "dead_letter"}
    assert authorize(finished, grants=lambda: {}) is finished


def test_a_grants_rate_is_the_senders_ingestion_limit():
    limit = IngestionLimit(IngestionLimits(tenant_per_minute=100, sender_per_minute=50))
    chat = Grant("acme", "chat", ("messages",), "high", ("user",), per_minute=2)
    items = [authorize(item_from(sent_by("chat", category="messages"), n=n), grants=lambda: grants(chat))
             for n in range(3)]
    out = limit.process(limit.new_state(), items, NOW)
    assert [i.get("reason") for i in out] == [None, None, "sender chat of tenant acme is over its limit of 2 a minute"]
