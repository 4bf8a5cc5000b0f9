"""A user is (tenant, user id): the one key function (kernel/requests.py user_key) names every user apart,
keeps a default-tenant user's key as it was before tenants, and the flow's steps, audiences, tokens and
pseudonyms keep two tenants' `alice` apart."""

from datetime import timedelta

import pytest

from analytics.pseudonym import UserKeys
from connectors.redis import user_channel
from gateway.auth import AuthError, TokenVerifier, User, issue_token
from kernel import validate
from kernel.requests import routing_key, tenant_problem, user_key

from flow_items import NOW, Pipeline, device, encode, fan_out, preferences_record, request


def test_a_default_tenant_user_keeps_their_bare_id_and_every_other_user_is_tenant_and_id():
    assert user_key("default", "alice") == user_key(None, "alice") == "alice"
    assert user_key("acme", "alice") == "acme:alice"
    # A default-tenant id with a ':' cannot pass for another tenant's user.
    assert user_key("default", "acme:alice") == "default:acme:alice" != user_key("acme", "alice")


def test_no_two_users_share_a_key_because_no_tenant_contains_a_colon():
    users = [("default", "alice"), ("acme", "alice"), ("default", "acme:alice"), ("acme", "b:c"), ("acme", "b"),
             ("default", "default:x"), ("default", "x"), ("globex", "alice"), ("default", "globex:alice:")]
    assert len({user_key(*user) for user in users}) == len(users)
    assert "(':' separates tenant and user in keys)" in validate.problem(request(tenant="acme:b"), NOW)


@pytest.mark.parametrize("tenant", ["acme", "acme-eu", "acme_2", "a.b", "7eleven", "t" * 128, "default"])
def test_a_tenant_is_a_plain_name(tenant):
    assert tenant_problem(tenant) is None
    assert validate.problem(request(tenant=tenant), NOW) is None


@pytest.mark.parametrize("tenant, reason", [
    ("acme:b", "tenant 'acme:b' must be letters, digits, '.', '_' and '-', starting with a letter or digit"),
    ("*", "tenant '*' must be"),  # every tenant, in grants
    ("acme b", "tenant 'acme b' must be"), ("-acme", "must be"), ("acmé", "must be"), ("acme/x", "must be"),
    (" ", "tenant is empty"), ("t" * 129, "tenant is longer than 128 characters"), (7, "tenant must be a string"),
])
def test_anything_else_is_refused_with_the_reason_wherever_it_comes_in(tenant, reason):
    assert reason in tenant_problem(tenant)
    if isinstance(tenant, str):
        assert validate.problem(request(tenant=tenant), NOW) == tenant_problem(tenant)
    verifier = TokenVerifier("unit-test-secret-of-thirty-two-bytes")
    with pytest.raises(AuthError, match="the token's tenant"):
        verifier.user_of(issue_token("alice", verifier.key, tenant=tenant))


def test_every_record_about_a_user_is_partitioned_by_the_users_key():
    assert routing_key(request("alice")) == b"alice"
    assert routing_key(request("alice", tenant="acme")) == b"acme:alice"
    assert routing_key(preferences_record("alice", tenant="acme")) == b"acme:alice"
    assert routing_key(device("alice", tenant="acme")) == b"acme:alice"
    fan = fan_out(["alice"], tenant="acme")
    assert routing_key(fan) == fan["id"].encode()  # re-keyed by user in the flow
    assert user_channel("default", "alice") == "user:alice" != user_channel("acme", "alice")


def test_one_tenants_preferences_do_not_decide_for_another_tenants_user_of_the_same_id():
    flow = Pipeline(until="apply_preferences")
    acme_prefs = preferences_record("alice", tenant="acme", enabled=False)
    flow.update([flow.message("notify.preferences", routing_key(acme_prefs), encode(acme_prefs, "notify.preferences"))])
    acme, default = flow.run(request(tenant="acme", title="for acme's alice"), request(title="for alice"))
    assert (acme["tenant"], acme.get("outcome")) == ("acme", "dropped")
    assert (default["tenant"], default.get("outcome")) == ("default", None)
    assert default["user"]["preferences"]["enabled"] and default["user"]["preferences"]["tenant"] == "default"


def test_a_segment_is_its_tenants():
    flow = Pipeline(until="expand_audience", members={("acme", "segment:beta"): ["alice"], "segment:beta": ["bob"]})
    out = flow.run(fan_out(segment="beta", tenant="acme"), fan_out(segment="beta"))
    assert [(item["tenant"], item["user_id"]) for item in out] == [("acme", "alice"), ("default", "bob")]
    assert flow.members_of.calls == [{("acme", "segment:beta"), "segment:beta"}]


def test_a_token_names_its_tenant_and_one_without_is_the_default_tenants():
    verifier = TokenVerifier("unit-test-secret-of-thirty-two-bytes")
    assert verifier.user_of(issue_token("alice", verifier.key)) == User("default", "alice")
    assert verifier.user_of(issue_token("alice", verifier.key, tenant="acme")) == User("acme", "alice")
    assert User("acme", "alice").key == "acme:alice" and User("default", "alice").key == "alice"
    for bad in ("", "a:b", 7):
        with pytest.raises(AuthError, match="tenant"):
            verifier.user_of(issue_token("alice", verifier.key, tenant=bad))


def test_two_tenants_alice_have_different_pseudonyms_and_the_default_ones_did_not_change():
    keys = UserKeys(b"unit-test-secret-0123456789", timedelta(days=30))
    assert keys.of("alice", NOW, "acme") != keys.of("alice", NOW, "default")
    assert keys.of("alice", NOW) == (keys.version(NOW), keys.pseudonym("alice", keys.version(NOW)))
    assert keys.every_version("alice", NOW, "acme") != keys.every_version("alice", NOW)
