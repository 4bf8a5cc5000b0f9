"""`notifyflow demo`: the local stack, the notification flow, the in-app delivery flows and analytics
on the sample users and requests, and tables of what the flows decided, what reached the
notification center and what analytics rolled up."""

from __future__ import annotations

import json
import tempfile
import time
from contextlib import ExitStack
from importlib import resources
from pathlib import Path

import psycopg
from rich.table import Table

from connectors.kafka import TopicReader
from kernel import settings
from kernel.requests import device_record, from_json, preferences_record
from kernel.topics import DEVICES, DLQ, LANES, OUTBOX_TOPICS, PREFERENCES, STATUS, codec_for, outbox_topic
from notifyflow.console import console, printable
from notifyflow.processes import AnalyticsProcess, FlowError, FlowProcess, delivery_flow
from notifyflow.publish import publish_requests, publish_user_state
from notifyflow.stack import running_stack

SAMPLES = resources.files("infra") / "samples" / "notifications.json"
USERS = resources.files("infra") / "samples" / "users.json"
OUTPUT_TOPICS = (STATUS, DLQ, *OUTBOX_TOPICS)


def run() -> None:
    """Start the local stack, the notification flow, the in-app delivery flows and analytics, send the
    samples, and show what the flows decided, what reached the notification center, and the analytics."""
    with running_stack(), tempfile.TemporaryDirectory(prefix="notifyflow-demo-") as scratch, ExitStack() as flows:
        config, work = settings.load(), Path(scratch)
        users = json.loads(USERS.read_text())
        publish_user_state(config, PREFERENCES, [preferences_record(**p) for p in users["preferences"]])
        publish_user_state(config, DEVICES, [device_record(**d) for d in users["devices"]])
        with console.status("starting the notification flow, the in-app delivery flows and analytics"):
            running = [flows.enter_context(FlowProcess("notifications", work / "recovery", work / "flow.log"))]
            running += [flows.enter_context(FlowProcess(delivery_flow("in_app", lane), work / f"in-app-{lane}",
                                                        work / f"in-app-{lane}.log")) for lane in LANES]
            analytics = flows.enter_context(AnalyticsProcess(work / "analytics-recovery", work / "analytics.log"))
            time.sleep(5)  # let the flow read the user state first: nothing orders two topics
        with TopicReader(config.kafka_bootstrap_servers, list(OUTPUT_TOPICS)) as reader:
            publish_requests(config, [from_json(item) for item in json.loads(SAMPLES.read_text())])
            outputs = collect(reader, running, config)
        show_outputs(outputs)
        show_notification_center(config)
        show_analytics(analytics, statuses=sum(topic == STATUS for topic, _ in outputs))


def collect(reader: TopicReader, flows: list[FlowProcess], config: settings.Settings) -> list[tuple[str, dict]]:
    """What the flows write, until they have been quiet for a few seconds."""
    outputs, quiet_since, deadline = [], time.monotonic(), time.monotonic() + 60
    with console.status("waiting for the flows"):
        while time.monotonic() - quiet_since < (3 if outputs else 20) and time.monotonic() < deadline:
            messages = reader.poll(0.5)
            if not messages:
                for flow in flows:
                    flow.check()
            for message in messages:
                quiet_since = time.monotonic()
                outputs.append((message.topic(), codec_for(message.topic(), config.schema_registry_url)
                                .decode(message.value())))
    return outputs


def show_notification_center(config: settings.Settings) -> None:
    table = Table("user", "title", "body", "merged", "unread", title="notification center (PostgreSQL)")
    with psycopg.connect(config.database_url) as db:
        for row in db.execute("SELECT user_id, title, body, merge_count, read_at IS NULL FROM notifications "
                              "ORDER BY user_id, created_at"):
            table.add_row(row[0], row[1], row[2], str(row[3]), "yes" if row[4] else "no")
    console.print(table)


def show_analytics(analytics: AnalyticsProcess, statuses: int) -> None:
    """The statuses per channel as ClickHouse rolled them up, once the analytics flow has them all."""
    deadline = time.monotonic() + 30
    with console.status("waiting for analytics"):
        while analytics.sql("SELECT count() FROM notifyflow.events_raw")[0][0] < statuses:
            analytics.check()
            if time.monotonic() > deadline:
                raise FlowError(f"analytics did not store {statuses} statuses within 30 s; see {analytics.log}")
            time.sleep(0.5)
    table = Table("channel", "requested", "merged", "delivered", "deferred", "dropped",
                  title="analytics (ClickHouse rollups per channel)")
    for row in analytics.sql("SELECT if(channel = '', '(none)', channel), sum(requested), sum(merged), sum(delivered),"
                             " sum(deferred), sum(dropped) FROM notifyflow.kpi_minute GROUP BY channel ORDER BY 1"):
        table.add_row(*(str(value) for value in row))
    console.print(table)


def show_outputs(outputs: list[tuple[str, dict]]) -> None:
    jobs = Table("user", "channel", "lane", "title", "body", "then, if unseen",
                 title=f"delivery jobs ({outbox_topic('<channel>', '<lane>')})")
    for topic, job in outputs:
        if topic in OUTBOX_TOPICS:
            fallback = ", ".join(f"{f['channel']} after {f['after_seconds'] // 60} min" for f in job["fallback"])
            jobs.add_row(job["user_id"], job["channel"], job["lane"], job["title"], job["body"], fallback)
    console.print(jobs)
    other = Table("user", "outcome", "reason", title=f"not sent now ({STATUS}, {DLQ})")
    for topic, value in outputs:
        if topic == DLQ:
            other.add_row(printable(value["original_key"]), f"dead letter ({value['stage']})", value["reason"])
        elif topic == STATUS and value["status"] not in ("requested", "merged", "sent", "delivered"):
            other.add_row(value["user_id"], value["status"], value["reason"] or "")
    console.print(other)
