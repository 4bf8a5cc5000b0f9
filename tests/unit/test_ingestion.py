"""Ingestion limits per tenant and per sender, on the broker's timestamps."""

from __future__ import annotations

import pytest
from flow_items import NOW, encode, request

from flows.ingestion import IngestionLimit, IngestionLimits, partition_of, share, tenant_of
from flows.intake import Intake

INTAKE = Intake()


def arriving(second: float, tenant: str = "acme", sender: str = "ci", n: int = 0, partition: int = 0) -> dict:
    req = request(title=f"Build {n}", tenant=tenant)
    req["metadata"]["source_app"] = sender
    return INTAKE.item("notify.events", partition, n, b"alice", encode(req), NOW, timestamp=(1, int(second * 1000)))


def outcomes(out: list[dict]) -> list[str | None]:
    return [item.get("reason") for item in out]


def test_a_sender_over_its_limit_is_dead_lettered_while_the_tenants_other_senders_go_on():
    limit = IngestionLimit(IngestionLimits(tenant_per_minute=5, sender_per_minute=3))
    state = limit.new_state()
    burst = [arriving(1000 + n, sender="ci", n=n) for n in range(4)]
    out = limit.process(state, burst, NOW)
    assert outcomes(out) == [None, None, None, "sender ci of tenant acme is over its limit of 3 a minute"]
    assert out[3]["outcome"] == "dead_letter" and out[3]["stage"] == "ingest_limit"
    assert out[3]["source"] == burst[3]["source"]  # its own bytes, for a replay
    out = limit.process(state, [arriving(1005, sender="billing", n=n) for n in range(3)], NOW)
    assert outcomes(out) == [None, None, "tenant acme is over its limit of 5 a minute"]


def test_the_window_slides_and_tenants_are_counted_apart():
    limit = IngestionLimit(IngestionLimits(tenant_per_minute=2, sender_per_minute=2))
    state = limit.new_state()
    assert outcomes(limit.process(state, [arriving(1000), arriving(1030), arriving(1059)], NOW)) == [
        None, None, "tenant acme is over its limit of 2 a minute"]
    assert outcomes(limit.process(state, [arriving(1060)], NOW)) == [None]  # the request at 1000 left the window
    other = limit.new_state()
    assert outcomes(limit.process(other, [arriving(1060, tenant="globex")], NOW)) == [None]
    assert tenant_of(arriving(0, tenant="globex")) == "globex"


def test_a_replay_decides_the_same_whatever_the_clock_says_now():
    limit = IngestionLimit(IngestionLimits(tenant_per_minute=2, sender_per_minute=2))
    burst = [arriving(1000 + n, n=n) for n in range(3)]
    first = limit.process(limit.new_state(), burst, NOW)
    later = limit.process(limit.new_state(), burst, NOW.replace(year=2030))
    assert outcomes(first) == outcomes(later) == [None, None, "tenant acme is over its limit of 2 a minute"]


def test_limits_come_from_the_environment_and_bad_ones_are_refused():
    # The defaults admit the platform's 100,000 requests a second from one tenant.
    assert IngestionLimits.from_env({"NOTIFYFLOW_TENANT_PER_MINUTE": "100"}) == IngestionLimits(100, 3_000_000)
    assert IngestionLimits().tenant_per_minute == 100_000 * 60
    with pytest.raises(ValueError, match="whole numbers"):
        IngestionLimits.from_env({"NOTIFYFLOW_SENDER_PER_MINUTE": "lots"})


def test_each_partition_enforces_its_share_of_the_limits():
    assert [share(10, 4), share(8, 4), share(6_000_000, 64)] == [3, 2, 93_750]
    limit = IngestionLimit(IngestionLimits(tenant_per_minute=12, sender_per_minute=6), partitions=4)
    state = limit.new_state()
    out = limit.process(state, [arriving(1000 + n, sender="ci", n=n, partition=2) for n in range(3)], NOW)
    assert outcomes(out) == [None, None, "sender ci of tenant acme is over its limit of 2 a minute"]
    out = limit.process(state, [arriving(1010, sender="billing", n=n, partition=2) for n in range(2)], NOW)
    assert outcomes(out) == [None, "tenant acme is over its limit of 3 a minute"]
    assert partition_of(arriving(0, partition=2)) == "notify.events/2" != partition_of(arriving(0, partition=3))


def test_tenants_and_senders_idle_for_a_minute_are_forgotten():
    limit = IngestionLimit(IngestionLimits(tenant_per_minute=5, sender_per_minute=5))
    state = limit.new_state()
    limit.process(state, [arriving(1000, tenant="acme", sender="ci"), arriving(1001, tenant="globex", sender="a")], NOW)
    assert set(state["tenants"]) == {"acme", "globex"}
    limit.process(state, [arriving(1070, tenant="acme", sender="ci")], NOW)
    assert set(state["tenants"]) == {"acme"} and set(state["senders"]) == {("acme", "ci")}
    assert state["tenants"]["acme"] == {1070: 1}
    limit.process(state, [arriving(1200, tenant="acme", sender="ci")], NOW)
    assert not limit.is_empty(state)
