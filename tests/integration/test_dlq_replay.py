"""On-call: a record the running notification flow dead-lettered is replayed to its source topic
once the cause is gone, and a second replay of the same selection publishes nothing."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta

import psycopg

from connectors.kafka import read_topic
from kernel.validate import MAX_CLOCK_SKEW
from notifyflow.processes import FlowProcess

from flow_harness import Outputs, jobs, publish, publish_raw, request, unique
from cli_harness import notifyflow


def test_a_dead_letter_is_replayed_once_after_the_cause_is_gone(stack, tmp_path):
    user = unique("dlq")
    with FlowProcess("notifications", tmp_path / "recovery", tmp_path / "flow.log") as flow:
        outputs = Outputs(flow)
        try:
            outputs.settle()  # the flow has read the session's backlog
            # The sender's clock runs a few seconds past the tolerated skew: rejected now, fine a little later.
            created = datetime.now(UTC).replace(microsecond=0) + MAX_CLOCK_SKEW + timedelta(seconds=8)
            bad = request(user, "Deploy finished", metadata={"created_at": created})
            select = ["--stage", "validate", "--reason", created.isoformat(), "--idle", "1"]
            publish("notify.events", [bad])
            [(_, letter)] = outputs.wait_for({user}, bool)
            assert (letter["stage"], letter["topic"]) == ("validate", "notify.events")

            dry = notifyflow("dlq", "replay", *select, "--dry-run")
            assert dry.returncode == 0, dry.stderr
            assert "1 dead letters match" in dry.stdout and "would replay" in dry.stdout

            time.sleep(max(0.0, (created - MAX_CLOCK_SKEW - datetime.now(UTC)).total_seconds()) + 1)
            first = notifyflow("dlq", "replay", *select)
            assert first.returncode == 0, first.stderr
            assert replayed_to_events(first.stdout) == "1" and "0 already replayed" in first.stdout
            found = outputs.wait_for({user}, lambda f: bool(jobs(f)))
            assert [job["notification_id"] for _, job in jobs(found)] == [bad["id"]]

            listed = notifyflow("dlq", "--idle", "1")
            groups = listed.stdout.split("newest")[0]  # the grouped table, before the newest letters
            [group] = [line.split("│") for line in groups.splitlines() if created.isoformat() in line]
            assert [cell.strip() for cell in group[3:5]] == ["1", "1"]  # one dead letter, replayed

            second = notifyflow("dlq", "replay", *select)
            assert second.returncode == 0, second.stderr
            assert replayed_to_events(second.stdout) == "0" and "1 already replayed" in second.stdout
            outputs.settle()
            assert len(jobs(outputs.wait_for({user}, bool))) == 1

            # A broken record of a compacted topic is not replayed: it would become the user's latest state.
            since = datetime.now(UTC).isoformat()
            publish_raw("notify.preferences", user.encode(), b"\x00not avro")
            outputs.wait_for({user}, lambda f: any(t == "notify.dlq" and v["topic"] == "notify.preferences"
                                                   for t, v in f))
            refused = notifyflow("dlq", "replay", "--stage", "decode", "--topic", "notify.preferences",
                                 "--since", since, "--idle", "1")
            assert refused.returncode == 0, refused.stderr
            assert "1 not replayed: from a compacted or unknown topic" in refused.stdout
        finally:
            outputs.close()
    copies = [m for m in read_topic(os.environ["KAFKA_BOOTSTRAP_SERVERS"], "notify.events", idle_timeout_s=1)
              if m.key() == user.encode()]
    assert len(copies) == 2 and copies[0].value() == copies[1].value()  # the original and one replay
    assert len([m for m in read_topic(os.environ["KAFKA_BOOTSTRAP_SERVERS"], "notify.preferences", idle_timeout_s=1)
                if m.key() == user.encode()]) == 1
    with psycopg.connect(os.environ["DATABASE_URL"]) as db:
        assert db.execute('SELECT count(*) FROM dlq_replays WHERE topic = %s AND partition = %s AND "offset" = %s',
                          (letter["topic"], letter["partition"], letter["offset"])).fetchone() == (1,)


def replayed_to_events(out: str) -> str:
    """The count in the notify.events row of the replay table."""
    [row] = [line.split("│") for line in out.splitlines() if "notify.events" in line]
    return row[2].strip()


def test_bad_selections_get_one_line_errors(stack):
    cases = {("dlq", "replay"): "choose dead letters by --stage and/or --reason",
             ("dlq", "replay", "--stage", "no-such-stage"): "no dead letters at stage 'no-such-stage'",
             ("dlq", "replay", "--reason", "x", "--topic", "notify.nope"): "unknown topic 'notify.nope'",
             ("dlq", "replay", "--reason", "x", "--since", "yesterday"): "--since 'yesterday' is not an ISO-8601 time",
             ("dlq", "replay", "--reason", "x", "--since", "2026-01-02", "--until", "2026-01-01"): "is not before"}
    for args, message in cases.items():
        result = notifyflow(*args, "--idle", "1")
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr, (args, result.stderr)
