"""The analytics process against the real broker and the real ClickHouse engine (chDB), read the way
an analyst reads it: SQL through the process's endpoint while the flow runs."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from importlib import resources

import httpx
from analytics_harness import SECRET, analytics_process, engagement, status, wait_for
from flow_harness import preferences, publish, publish_raw

from analytics.pseudonym import UserKeys
from connectors.kafka import read_topic

STATES = ("requested", "sent", "delivered", "failed", "retried", "deduplicated", "merged", "rate_limited",
          "deferred", "digested", "bounced", "token_invalid", "dropped", "expired")
ACTIONS = ("opened", "clicked", "dismissed", "unsubscribed")


def workload(run: str, first: int, count: int) -> tuple[list[dict], list[dict]]:
    statuses = [status(run, n, STATES[n % len(STATES)], channel=("push", "email", "in_app")[n % 3])
                for n in range(first, first + count)]
    engagements = [engagement(run, n, ACTIONS[n % len(ACTIONS)]) for n in range(first, first + count // 5)]
    return statuses, engagements


def counts_query(run: str) -> str:
    return (f"SELECT kind, status, count() FROM notifyflow.events_raw WHERE startsWith(notification_id, '{run}-')"
            " GROUP BY kind, status ORDER BY kind, status")


def expected(statuses: list[dict], engagements: list[dict]) -> list[list]:
    found = Counter(("status", s["status"]) for s in statuses) + Counter(("engagement", e["action"]) for e in engagements)
    return [[kind, state, n] for (kind, state), n in sorted(found.items())]


def test_counts_are_exact_after_the_flow_is_killed_and_resumed(stack, tmp_path):
    run = uuid.uuid4().hex[:10]
    analytics = analytics_process(tmp_path)
    statuses, engagements = [], []
    try:
        # No snapshot is taken within a minute, so the resumed flow re-reads everything from the start.
        analytics.start(snapshot_s=60)
        batch = workload(run, 0, 1500)
        publish("notify.status", batch[0])
        publish("notify.engagement", batch[1])
        publish_raw("notify.status", run.encode(), b"\x00not avro")
        statuses, engagements = statuses + batch[0], engagements + batch[1]
        wait_for(analytics, counts_query(run), expected(statuses, engagements))
        analytics.kill()

        # A backlog published while the process is down; killed again once it has stored some of it (the
        # batched writer may store all of a 20,000-row backlog in one tick: then the kill comes after it).
        backlog = workload(run, 1500, 20_000)[0]
        publish("notify.status", backlog)
        statuses += backlog
        analytics.start(snapshot_s=1)
        stored = f"SELECT count() FROM notifyflow.events_raw WHERE startsWith(notification_id, '{run}-')"
        while (seen := analytics.sql(stored)[0][0]) <= 2000:
            analytics.check()
        analytics.kill()
        assert seen <= len(statuses) + len(engagements)

        # Resumed from no snapshot or from one mid-backlog, then from a fresh one: each row stored exactly once.
        for first in (21_500, 22_000):
            analytics.start(snapshot_s=1)
            batch = workload(run, first, 500)
            publish("notify.status", batch[0])
            publish("notify.engagement", batch[1])
            statuses, engagements = statuses + batch[0], engagements + batch[1]
            wait_for(analytics, counts_query(run), expected(statuses, engagements))
            time.sleep(3)  # snapshots now cover some of what was written
            analytics.kill()
        analytics.start(snapshot_s=1)
        wait_for(analytics, counts_query(run), expected(statuses, engagements))
        assert analytics.sql(f"SELECT uniqExact(source_topic, source_partition, source_offset), count()"
                             f" FROM notifyflow.events_raw WHERE startsWith(notification_id, '{run}-')") == [
            [len(statuses) + len(engagements)] * 2]
        assert_rollups_equal_rows(analytics)
    finally:
        analytics.stop()
    # The undecodable record went to the dead-letter topic with its bytes, and went there again when the
    # first resume re-read the topic from the start: proof the replay happened.
    letters = [m for m in read_topic(stack.urls["KAFKA_BOOTSTRAP_SERVERS"], "notify.dlq") if m.key() == run.encode()]
    assert len(letters) >= 2


def assert_rollups_equal_rows(analytics, where: str = "1") -> None:
    """The same per-minute counts answered by the rollup projection (or failing if it cannot) and by the rows."""
    dims = "channel, category, campaign_id, variant, platform, kind, status"
    query = (f"SELECT toStartOfMinute(at) AS minute, {dims}, count() FROM notifyflow.events_raw WHERE {where}"
             f" GROUP BY minute, {dims} ORDER BY ALL")
    rolled = analytics.sql(f"{query} SETTINGS force_optimize_projection = 1")
    assert rolled and rolled == analytics.sql(f"{query} SETTINGS optimize_use_projections = 0")


def ab_campaign(run: str, campaign: str) -> tuple[list[dict], list[dict]]:
    """400 notifications per variant; A: 40 clicked, 12 converted; B: 72 clicked, 30 converted."""
    statuses, engagements = [], []
    for variant, offset, clicks, conversions in (("A", 0, 40, 12), ("B", 400, 72, 30)):
        for n in range(offset, offset + 400):
            # Sent at the learned best time to treated users, at once to the holdout (the learning readouts).
            statuses.append(status(run, n, "delivered" if n % 2 else "sent", campaign=campaign, variant=variant,
                                   latency_ms=20 + n % 300, channel=("push", "in_app")[n % 2],
                                   cohort="holdout" if n % 10 == 0 else "treated", send_time="optimal"))
        for n in range(offset, offset + clicks):
            engagements.append(engagement(run, n, "clicked", campaign=campaign, variant=variant,
                                          action_id="buy" if n - offset < conversions else None))
    return statuses, engagements


def two_proportion_p(x1: int, n1: int, x2: int, n2: int) -> tuple[float, float]:
    pooled = (x1 + x2) / (n1 + n2)
    z = (x2 / n2 - x1 / n1) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return z, math.erfc(abs(z) / math.sqrt(2))


def test_rollups_ab_readout_privacy_and_erasure(stack, tmp_path):
    run = uuid.uuid4().hex[:10]
    campaign = f"spring-{run}"
    statuses, engagements = ab_campaign(run, campaign)
    now = datetime.now(UTC)
    failure = status(run, 900, "bounced", channel="email", campaign=campaign, variant="A",
                     reason="550 5.1.1 <ana.silva@example.com>: mailbox unknown, call +351 912 345 678")
    # One user's events across three key periods (rotation every 30 days), all within retention.
    erased = [status(run, 1000 + i, "sent", at=now - timedelta(days=days)) for i, days in enumerate((0, 35, 70))]
    erased = [{**s, "user_id": f"{run}-erase-me", "tenant": "default"} for s in erased]  # the tombstone's user
    analytics = analytics_process(tmp_path, ANALYTICS_DP_MIN_COUNT="20").start()
    try:
        publish("notify.status", [*statuses, failure, *erased])
        publish("notify.engagement", engagements)
        total = len(statuses) + len(engagements) + 1 + len(erased)
        run_rows = f"SELECT count() FROM notifyflow.events_raw WHERE startsWith(notification_id, '{run}-')"
        wait_for(analytics, run_rows, [[total]])

        # The rollups (ClickHouse's per-minute aggregate of every part) equal the same aggregates of the rows.
        assert_rollups_equal_rows(analytics, f"campaign_id = '{campaign}'")
        rolled = analytics.sql("SELECT channel, quantilesTDigest(0.5, 0.95, 0.99)(latency_ms) FROM notifyflow.events_raw"
                               f" WHERE campaign_id = '{campaign}' AND status IN ('sent', 'delivered')"
                               " GROUP BY channel ORDER BY channel SETTINGS force_optimize_projection = 1")
        exact = analytics.sql("SELECT channel, quantilesExact(0.5, 0.95, 0.99)(dateDiff('millisecond', created_at, at))"
                              f" FROM notifyflow.events_raw WHERE campaign_id = '{campaign}'"
                              " AND status IN ('sent', 'delivered') GROUP BY channel ORDER BY channel")
        assert [channel for channel, _ in rolled] == [channel for channel, _ in exact] == ["in_app", "push"]
        for (_, digest), (_, truth) in zip(rolled, exact):
            assert all(abs(d - t) <= 0.03 * 320 for d, t in zip(digest, truth)), (digest, truth)

        # The A/B readout: per-variant CTR and conversion, z and p against control A.
        [readout] = analytics.sql("SELECT control, variant, control_reached, variant_reached, ctr_z, ctr_p,"
                                  " conversion_z, conversion_p, ctr_significant FROM notifyflow.ab_test"
                                  f" WHERE campaign_id = '{campaign}'")
        ctr_z, ctr_p = two_proportion_p(40, 400, 72, 400)
        conversion_z, conversion_p = two_proportion_p(12, 400, 30, 400)
        assert readout[:4] == ["A", "B", 400, 400]
        assert [round(v, 6) for v in readout[4:8]] == [round(v, 6) for v in (ctr_z, ctr_p, conversion_z, conversion_p)]
        assert readout[8] == 1 and ctr_p < 0.01

        # No PII: no such column anywhere, no user id stored, addresses and numbers masked out of reasons.
        columns = {name for [name] in analytics.sql("SELECT name FROM system.columns WHERE database = 'notifyflow'")}
        assert not columns & {"user_id", "device_id", "email", "phone", "address", "token", "title", "body", "name"}
        assert analytics.sql(f"SELECT count() FROM notifyflow.events_raw WHERE user_key LIKE '{run}%'") == [[0]]
        [[reason]] = analytics.sql(f"SELECT reason FROM notifyflow.events_raw WHERE notification_id = '{run}-900'")
        assert reason == "550 5.1.1 <[email]>: mailbox unknown, call [phone]"

        # Dashboards get Laplace noise on small counts only; the noise has mean 0 and variance 2/epsilon^2.
        [[mean, variance, big]] = analytics.sql(
            "SELECT avg(notifyflow_dp(100, 0.5, 1000, number) - 100), varPop(notifyflow_dp(100, 0.5, 1000, number)),"
            " any(notifyflow_dp(5000, 0.5, 1000, 1)) FROM numbers(200000)")
        assert abs(mean) < 0.1 and 7.5 < variance < 8.7 and big == 5000
        kpis = httpx.get(f"{analytics.url}/api/kpis?minutes=60", timeout=30).json()
        assert set(kpis) == {"series", "channels", "latency", "campaigns", "failures", "lag", "sto", "fatigue"}
        treated, holdout = kpis["sto"]["rows"][0][:2]  # over the whole topic: other tests' notifications too
        assert treated >= 720 and holdout >= 80
        released = [row for row in kpis["campaigns"]["rows"] if row[0] == campaign]
        # 400, 40, 72 and 30 are at least the threshold (20) and exact; A's 12 conversions carry noise (scale 1).
        assert [row[:5] for row in released][1] == [campaign, "B", 400, 72, 30]
        assert released[0][:4] == [campaign, "A", 400, 40] and abs(released[0][4] - 12) <= 10
        assert released[0][-2:] == [None, None] and round(released[1][-2], 6) == round(ctr_p, 6)
        assert "notifyflow analytics" in httpx.get(analytics.url, timeout=5).text

        # Analysts' SQL is read-only.
        refused = httpx.post(f"{analytics.url}/api/sql", content=b"DROP TABLE notifyflow.events_raw", timeout=30)
        assert refused.status_code == 400 and "readonly" in refused.json()["error"]

        # Erasure (the platform's preferences tombstone) removes the user's rows under every key version.
        keys = UserKeys(SECRET.encode())
        versions = sorted({keys.version(s["at"]) for s in erased})
        assert len(versions) == 3
        pairs = ", ".join(f"({v}, '{keys.pseudonym(f'{run}-erase-me', v)}')" for v in versions)
        mine = f"SELECT count() FROM notifyflow.events_raw WHERE (key_version, user_key) IN ({pairs})"
        assert analytics.sql(mine) == [[3]]
        publish("notify.preferences", [preferences(f"{run}-erase-me", deleted=True)])
        wait_for(analytics, mine, [[0]])
        wait_for(analytics, run_rows, [[total - 3]])

        # Queue depth: the flows' consumer lag, sampled from bytewax's own gauge.
        deadline = time.monotonic() + 30
        while not (lag := analytics.sql("SELECT topic FROM notifyflow.queue_lag WHERE flow = 'analytics'")):
            assert time.monotonic() < deadline, "no lag samples"
            time.sleep(1)
        assert {"notify.status", "notify.engagement"} <= {topic for [topic] in lag}

        # Every panel of the Grafana dashboard queries these views successfully (its time macro expanded).
        panels = json.loads((resources.files("infra") / "dashboards" / "notifyflow-analytics.json").read_text())["panels"]
        for panel in panels:
            sql = re.sub(r"\$__timeFilter\((\w+)\)", r"\1 >= now() - INTERVAL 1 DAY", panel["targets"][0]["rawSql"])
            assert analytics.sql(sql), panel["title"]

        # The CLI runs SQL through the same endpoint.
        cli = subprocess.run([sys.executable, "-m", "notifyflow.cli", "analytics", "sql", "--url", analytics.url,
                              f"SELECT variant, ctr FROM notifyflow.campaign_variants WHERE campaign_id = '{campaign}'"],
                             capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "200"})
        assert cli.returncode == 0, cli.stderr
        assert "0.1" in cli.stdout and "0.18" in cli.stdout
    finally:
        analytics.stop()


def test_user_mistakes_are_one_line_errors(stack, tmp_path):
    def analytics_cli(*args: str, **env: str) -> str:
        result = subprocess.run([sys.executable, "-m", "notifyflow.cli", "analytics", *args], capture_output=True,
                                text=True, timeout=60, env={**os.environ, "NOTIFYFLOW_HOME": str(tmp_path), **env})
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        return result.stderr

    assert "no analytics process at http://127.0.0.1:9" in analytics_cli("sql", "--url", "http://127.0.0.1:9",
                                                                          "SELECT 1")
    assert "epsilon must be positive" in analytics_cli("--epsilon", "0")
    assert "ANALYTICS_DP_EPSILON must be a number" in analytics_cli(ANALYTICS_DP_EPSILON="lots")
    assert "ANALYTICS_SECRET must be at least 16 bytes" in analytics_cli(ANALYTICS_SECRET="short")
    assert "name=url" in analytics_cli(ANALYTICS_FLOW_METRICS="http://flow:3030/metrics")
    with analytics_process(tmp_path) as running:
        assert "only one process may open a chDB directory" in analytics_cli("--port", "0", **running.env)
