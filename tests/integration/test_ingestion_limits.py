"""Per-sender and per-tenant ingestion limits in the running notification flow."""

from __future__ import annotations

from connectors.kafka import topic_partitions
from kernel.requests import user_key
from kernel.topics import EVENTS, codec_for
from notifyflow.processes import FlowProcess

from flow_harness import Outputs, bootstrap, publish, request, statuses, unique


def outcomes(outputs: Outputs, batch: list[dict]) -> list[str]:
    """Per request, in order: "accepted" or its dead letter's reason (one user each: one partition, in order)."""
    ids, codec = [r["id"] for r in batch], codec_for("notify.events")
    publish("notify.events", batch)

    def decided(found) -> dict[str, str]:
        accepted = {s["notification_id"]: "accepted" for s in statuses(found) if s["status"] == "requested"}
        dead = {codec.decode(v["original"])["id"]: v["reason"] for t, v in found
                if t == "notify.dlq" and v["stage"] == "ingest_limit"}
        return accepted | dead

    # Statuses name the user id; dead letters keep the original key, the user's key (tenant and id).
    user, tenant = batch[0]["user_id"], batch[0]["tenant"]
    found = outputs.wait_for({user, user_key(tenant, user)}, lambda f: set(ids) <= set(decided(f)))
    return [decided(found)[i] for i in ids]


def test_a_flooding_sender_is_dead_lettered_past_its_limit_and_others_are_not(stack, tmp_path):
    tenant, user = unique("acme"), unique("u")
    # Each partition of notify.events enforces its share of each limit, and all of this test's
    # requests are for one user, so on one partition: limits of 5 and 7 a minute on it.
    partitions = topic_partitions(bootstrap())[EVENTS]
    env = {"NOTIFYFLOW_SENDER_PER_MINUTE": str(5 * partitions), "NOTIFYFLOW_TENANT_PER_MINUTE": str(7 * partitions)}

    def batch(prefix: str, n: int, sender: str, tenant: str = tenant) -> list[dict]:
        return [request(user, f"{prefix} {i}", tenant=tenant, metadata={"source_app": sender}) for i in range(n)]

    with FlowProcess("notifications", tmp_path / "recovery", tmp_path / "flow.log", env=env) as flow:
        outputs = Outputs(flow)
        flood = outcomes(outputs, batch("Flood", 7, "spammy"))
        calm = outcomes(outputs, batch("Calm", 3, "ci"))
        other = outcomes(outputs, batch("Other", 3, "spammy", tenant=unique("globex")))
        outputs.close()
    assert flood == ["accepted"] * 5 + [f"sender spammy of tenant {tenant} is over its limit of 5 a minute"] * 2
    # The tenant's other sender gets what is left of the tenant's 7 a minute.
    assert calm == ["accepted"] * 2 + [f"tenant {tenant} is over its limit of 7 a minute"]
    assert other == ["accepted"] * 3  # another tenant is not affected
