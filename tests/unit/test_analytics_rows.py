"""analytics/rows.py (consumed records -> raw rows), analytics/pseudonym.py (rotating user keys) and
analytics/lag.py (consumer lag from bytewax's metrics), on records encoded by the real codecs."""

import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from analytics import lag
from analytics.pseudonym import UserKeys, from_env
from analytics.rows import COLUMNS, Rows, masked, source_partition
from kernel.requests import preferences_record
from kernel.topics import codec_for
from notifyflow.stack import free_port

NOW = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
KEYS = UserKeys(b"unit-test-secret-0123456789", timedelta(days=30))
STATUS = {"notification_id": "n1", "user_id": "alice", "channel": "email", "device_id": "phone-1", "status": "bounced",
          "attempt": 2, "provider": "ses", "reason": "550 <alice@example.com> unknown", "category": "billing",
          "campaign_id": "c1", "variant": "B", "platform": None, "created_at": NOW - timedelta(seconds=3), "at": NOW,
          "tenant": "acme"}


def item(topic: str, record: dict, offset: int = 7) -> dict:
    return Rows(KEYS).item(topic, 2, offset, b"alice", codec_for(topic).encode(record), NOW)


def test_a_status_becomes_a_row_with_a_pseudonym_and_nothing_personal():
    row = dict(zip(COLUMNS, item("notify.status", STATUS)["row"]))
    # The status is acme's alice: pseudonymised as (tenant, user), not as the default tenant's alice.
    assert (row["key_version"], row["user_key"]) == KEYS.of("alice", NOW, "acme") != KEYS.of("alice", NOW)
    assert (row["kind"], row["status"], row["channel"], row["provider"], row["attempt"]) == (
        "status", "bounced", "email", "ses", 2)
    assert row["reason"] == "550 <[email]> unknown"
    assert (row["source_topic"], row["source_partition"], row["source_offset"]) == ("notify.status", 2, 7)
    assert not {"alice", "phone-1"} & {str(v) for v in row.values()}


def test_an_engagement_becomes_a_row_with_its_action():
    record = {"notification_id": "n1", "user_id": "alice", "action": "clicked", "action_id": "buy", "device_id": "d",
              "channel": "push", "at": NOW, "campaign_id": "c1", "variant": "A", "category": "promo"}
    row = dict(zip(COLUMNS, item("notify.engagement", record)["row"]))
    assert (row["kind"], row["status"], row["action_id"], row["variant"], row["created_at"]) == (
        "engagement", "clicked", "buy", "A", NOW)


def test_a_preferences_tombstone_erases_every_key_version_in_retention_and_other_updates_are_ignored():
    erase = item("notify.preferences", preferences_record("alice", deleted=True))["erase"]
    versions = [version for version, _ in erase]
    assert versions == list(range(KEYS.version(NOW - timedelta(days=90)) - 1, KEYS.version(NOW) + 2))
    assert (KEYS.version(NOW - timedelta(days=89)), KEYS.pseudonym("alice", KEYS.version(NOW - timedelta(days=89)))) \
        in erase
    assert item("notify.preferences", preferences_record("alice")) == {}


def test_undecodable_bytes_become_a_dead_letter_with_the_original():
    dead = Rows(KEYS).item("notify.status", 1, 9, b"k", b"\x00junk", NOW)
    assert (dead["outcome"], dead["stage"], dead["source"]["value"], dead["source"]["offset"]) == (
        "dead_letter", "analytics_decode", b"\x00junk", 9)


def test_keys_rotate_per_period_and_differ_per_secret():
    a, b = KEYS.of("alice", NOW), KEYS.of("alice", NOW + timedelta(days=30))
    assert a[0] + 1 == b[0] and a[1] != b[1]
    assert UserKeys(b"another-secret-0123456789").of("alice", NOW) != KEYS.of("alice", NOW)
    with pytest.raises(ValueError):
        UserKeys(b"short")


def test_without_a_secret_one_is_generated_once_and_kept(tmp_path):
    first = from_env({}, home=tmp_path)
    assert (tmp_path / "analytics.secret").stat().st_mode & 0o777 == 0o600
    assert from_env({}, home=tmp_path).of("alice", NOW) == first.of("alice", NOW)
    assert from_env({"ANALYTICS_SECRET": "x" * 32}, home=tmp_path).of("alice", NOW) != first.of("alice", NOW)


@pytest.mark.parametrize("reason, expected", [
    ("550 5.1.1 <bob@example.org>: no such user", "550 5.1.1 <[email]>: no such user"),
    ("invalid number +44 20 7946 0958", "invalid number [phone]"),
    ("SNS rejected 15551234567", "SNS rejected [phone]"),
    ("HTTP 503 after 2.5 s", "HTTP 503 after 2.5 s"),
    (None, ""),
])
def test_reasons_lose_addresses_and_phone_numbers(reason, expected):
    assert masked(reason) == expected


def test_rows_batch_by_source_partition():
    assert source_partition(item("notify.status", STATUS)) == "notify.status:2"
    assert source_partition({"erase": []}) == "erasures"


METRICS = """# HELP bytewax_kafka_consumer_lag Difference between last offset on the broker and the consumed offset.
# TYPE bytewax_kafka_consumer_lag gauge
bytewax_kafka_consumer_lag{partition="0",step_id="delivery.read_outbox",topic="notify.outbox.push.normal"} 42.0
bytewax_kafka_consumer_lag{partition="1",step_id="delivery.read_outbox",topic="notify.outbox.push.normal"} 0.0
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 1.5
"""


@pytest.fixture
def metrics_url():
    """A flow's /metrics endpoint on loopback, as bytewax serves it."""
    class Metrics(BaseHTTPRequestHandler):
        def do_GET(self):
            body = METRICS.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Metrics)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    server.shutdown()
    server.server_close()


def test_lag_samples_come_from_every_reachable_flow(metrics_url):
    rows = lag.sample({"push": metrics_url, "down": f"http://127.0.0.1:{free_port()}/metrics"}, NOW)
    assert [row for row in rows if row[1] != "analytics"] == [
        [NOW, "push", "notify.outbox.push.normal", 0, 42], [NOW, "push", "notify.outbox.push.normal", 1, 0]]


def test_lag_is_read_from_bytewax_metrics():
    assert lag.lags(METRICS) == [("notify.outbox.push.normal", 0, 42), ("notify.outbox.push.normal", 1, 0)]
    assert lag.endpoints("push=http://a:3030/metrics, email=http://b:3030/metrics") == {
        "push": "http://a:3030/metrics", "email": "http://b:3030/metrics"}
    with pytest.raises(ValueError, match="name=url"):
        lag.endpoints("http://a:3030/metrics")
