"""A tenant's category policy changed with `notifyflow policies set` while the notification flow runs
takes effect without a restart, for that tenant only."""

from __future__ import annotations

from notifyflow.processes import FlowProcess

from cli_harness import notifyflow
from flow_harness import Outputs, publish, request, statuses, unique


def status_of(outputs: Outputs, req: dict) -> dict:
    publish("notify.events", [req])
    found = outputs.wait_for({req["user_id"]}, lambda f: any(s["notification_id"] == req["id"] for s in statuses(f)))
    return next(s for s in statuses(found) if s["notification_id"] == req["id"])


def test_a_lower_cap_set_while_the_flow_runs_rate_limits_that_tenant_only(stack, tmp_path):
    tenant, other, user = unique("shop"), unique("shop"), unique("ana")

    def build(n: int, in_tenant: str = tenant, to: str = user) -> dict:
        return request(to, f"Build {n} failed", category="ci", tenant=in_tenant)

    with FlowProcess("notifications", tmp_path / "recovery", tmp_path / "flow.log",
                     env={"NOTIFYFLOW_CONFIG_TTL_S": "1"}) as flow:
        outputs = Outputs(flow)
        before = [status_of(outputs, build(n))["status"] for n in range(2)]  # built in: 30 an hour
        changed = notifyflow("policies", "set", tenant, "ci", "--per-hour", "2", "--excess", "drop")
        assert changed.returncode == 0, changed.stderr
        after = [status_of(outputs, build(2))]
        while after[-1]["status"] != "rate_limited" and len(after) < 30:  # until the flow has re-read policies
            after.append(status_of(outputs, build(len(after) + 2)))
        for n in range(3):  # the other tenant's user gets 3 within the hour: its cap is still the built-in one
            elsewhere = status_of(outputs, build(n, in_tenant=other, to=f"{user}-2"))
        outputs.close()
    listed = notifyflow("policies", "list", "--tenant", tenant)
    assert before == ["requested", "requested"]
    assert (after[-1]["status"], after[-1]["reason"]) == ("rate_limited", "ci cap of 2 per hour reached")
    assert elsewhere["status"] == "requested"
    assert '"per_hour": 2' in listed.stdout
