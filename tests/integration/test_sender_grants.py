"""Sender grants in the running notification flow: a critical request from a sender granted only up
to high is dead-lettered at `authorize` with the reason; `notifyflow senders grant`, given while the
flow runs, lets the next one through without a restart."""

from __future__ import annotations

from kernel.requests import user_key
from kernel.topics import codec_for
from notifyflow.processes import FlowProcess

from cli_harness import notifyflow
from flow_harness import Outputs, publish, request, statuses, unique

# The flow re-reads grants this often; the test waits for the change, it does not time it.
CONFIG_TTL = {"NOTIFYFLOW_CONFIG_TTL_S": "1"}


def outcome(outputs: Outputs, req: dict) -> str:
    """`requested` once the flow routed the request, or the reason of its dead letter at authorize."""
    codec = codec_for("notify.events")
    publish("notify.events", [req])

    def decided(found) -> str | None:
        if any(s["notification_id"] == req["id"] and s["status"] == "requested" for s in statuses(found)):
            return "requested"
        return next((v["reason"] for t, v in found if t == "notify.dlq" and v["stage"] == "authorize"
                     and codec.decode(v["original"])["id"] == req["id"]), None)

    # Statuses name the user id; dead letters keep the original key, the user's key (tenant and id).
    users = {req["user_id"], user_key(req["tenant"], req["user_id"])}
    return decided(outputs.wait_for(users, lambda found: decided(found) is not None))


def test_an_ungranted_critical_is_dead_lettered_and_a_grant_given_while_the_flow_runs_takes_effect(stack, tmp_path):
    tenant, user = unique("bank"), unique("ana")
    assert notifyflow("senders", "grant", tenant, "auth", "--category", "security",
                      "--max-priority", "high").returncode == 0

    def alert(n: int) -> dict:
        return request(user, f"New sign-in {n}", "Was this you?", category="security", priority="critical",
                       tenant=tenant, metadata={"source_app": "auth"})

    with FlowProcess("notifications", tmp_path / "recovery", tmp_path / "flow.log", env=CONFIG_TTL) as flow:
        outputs = Outputs(flow)
        refused = outcome(outputs, alert(0))
        other_sender = outcome(outputs, request(user, "Hi", tenant=tenant, metadata={"source_app": "chat"}))
        granted = notifyflow("senders", "grant", tenant, "auth", "--category", "security",
                             "--max-priority", "critical")
        assert granted.returncode == 0, granted.stderr
        after = [outcome(outputs, alert(1))]
        while after[-1] != "requested" and len(after) < 30:  # until the flow has re-read the grants
            after.append(outcome(outputs, alert(len(after) + 1)))
        outputs.close()
    assert refused == f"sender auth of tenant {tenant} may not send priority critical (granted up to high)"
    # The tests' stack grants any sender of any tenant ('*', '*'); a specific grant overrides it for that sender.
    assert other_sender == "requested"
    assert after[-1] == "requested"
    assert set(after[:-1]) <= {refused}
