"""`notifyflow senders|policies|keys` against the stack's PostgreSQL: what they store and list, and one
clear line (exit 2, no traceback) for every mistake."""

from __future__ import annotations

import psycopg
import pytest

from cli_harness import notifyflow
from flow_harness import unique


def test_senders_grant_list_and_revoke(stack):
    tenant = unique("acme")
    granted = notifyflow("senders", "grant", tenant, "auth", "--category", "security", "--max-priority", "critical",
                         "--audience", "user", "--per-minute", "100")
    assert granted.returncode == 0, granted.stderr
    assert "security; up to critical; to user; 100 a minute" in granted.stdout
    listed = notifyflow("senders", "list", "--tenant", tenant)
    assert "auth" in listed.stdout and "critical" in listed.stdout
    assert notifyflow("senders", "revoke", tenant, "auth").returncode == 0
    assert "auth" not in notifyflow("senders", "list", "--tenant", tenant).stdout


def test_policies_set_list_and_reset(stack):
    tenant = unique("acme")
    changed = notifyflow("policies", "set", tenant, "marketing", "--per-day", "1", "--escalation", "high=60,300")
    assert changed.returncode == 0, changed.stderr
    assert notifyflow("policies", "set", tenant, "marketing", "--merge", "count").returncode == 0
    with psycopg.connect(stack.urls["DATABASE_URL"]) as db:
        [(stored,)] = db.execute("SELECT settings FROM category_policies WHERE tenant = %s", (tenant,)).fetchall()
    assert stored == {"per_day": 1, "escalation": {"high": [60, 300]}, "merge": "count"}  # merged, not replaced
    assert tenant in notifyflow("policies", "list").stdout
    assert notifyflow("policies", "reset", tenant, "marketing").returncode == 0


def test_what_is_learned_is_set_per_tenant_and_category(stack):
    tenant = unique("acme")
    changed = notifyflow("policies", "set", tenant, "social", "--send-time", "optimal", "--no-fatigue")
    assert changed.returncode == 0, changed.stderr
    with psycopg.connect(stack.urls["DATABASE_URL"]) as db:
        [(stored,)] = db.execute("SELECT settings FROM category_policies WHERE tenant = %s", (tenant,)).fetchall()
    assert stored == {"send_time": "optimal", "fatigue": False}
    refused = notifyflow("policies", "set", tenant, "social", "--send-time", "later")
    assert refused.returncode == 2 and "send_time must be one of now, optimal, off" in refused.stderr


def test_a_key_is_printed_once_and_stored_hashed(stack):
    tenant = unique("acme")
    made = notifyflow("keys", "create", tenant, "orders")
    key = made.stdout.strip().splitlines()[-1]
    assert made.returncode == 0 and key.startswith("nfk_")
    with psycopg.connect(stack.urls["DATABASE_URL"]) as db:
        [(digest,)] = db.execute("SELECT secret_sha256 FROM api_keys WHERE tenant = %s", (tenant,)).fetchall()
    assert key.split("_", 2)[2] not in digest
    assert key not in notifyflow("keys", "list", "--tenant", tenant).stdout


@pytest.mark.parametrize("args, says", [
    (("senders", "grant", "acme", "auth", "--max-priority", "urgent"), "priority 'urgent' is not one of"),
    (("senders", "grant", "acme", "auth", "--audience", "everyone"), "audience kind 'everyone'"),
    (("senders", "revoke", "acme", "nobody-has-this"), "has no grant of its own"),
    (("policies", "set", "acme", "ci", "--merge", "squash"), "merge must be one of"),
    (("policies", "set", "acme", "ci", "--per-hour", "lots"), "--per-hour must be a positive whole number"),
    (("policies", "set", "acme", "ci", "--escalation", "high=soon"), "write PRIORITY=SECONDS"),
    (("policies", "set", "acme", "ci"), "nothing to change"),
    (("policies", "reset", "acme", "never-set"), "has no policy of its own"),
    (("keys", "create", "*", "orders"), "tenant '*' must be letters, digits"),
    (("keys", "create", "acme", "*"), "one named sender"),
    # A tenant with ':' would make its users' `tenant:user` keys ambiguous, wherever it is typed.
    (("senders", "grant", "acme:b", "auth"), "tenant 'acme:b' must be letters, digits"),
    (("senders", "revoke", "acme b", "auth"), "tenant 'acme b' must be letters, digits"),
    (("senders", "list", "--tenant", "acme:b"), "tenant 'acme:b' must be"),
    (("policies", "set", "acme:b", "ci", "--merge", "count"), "tenant 'acme:b' must be"),
    (("policies", "set", "*", "ci", "--merge", "count"), "tenant '*' must be"),
    (("policies", "reset", "acme:b", "ci"), "tenant 'acme:b' must be"),
    (("policies", "list", "--tenant", ""), "tenant is empty"),
    (("keys", "create", "acme:b", "orders"), "tenant 'acme:b' must be"),
    (("keys", "list", "--tenant", "acme:b"), "tenant 'acme:b' must be"),
    (("user", "export", "alice", "--tenant", "acme:b"), "tenant 'acme:b' must be"),
    (("user", "erase", "alice", "--tenant", "acme:b", "--yes"), "tenant 'acme:b' must be"),
    (("keys", "revoke", "0000000000000000"), "no active key"),
])
def test_mistakes_get_one_clear_line(stack, args, says):
    result = notifyflow(*args)
    assert result.returncode == 2, result.stdout
    assert says in result.stderr and "Traceback" not in result.stderr
