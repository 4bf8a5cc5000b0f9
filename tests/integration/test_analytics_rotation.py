"""The A/B readout on the real ClickHouse engine (chDB, in this process) across a pseudonym key rotation:
one notification's rows keep one key version, so it is counted once; and p-values far in the tail."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from analytics_harness import Consumed

from analytics.pseudonym import UserKeys
from analytics.store import RawEvents

KEYS = UserKeys(b"rotation-test-secret-0123456789", timedelta(days=30))
# The last rotation instant before now (raw rows live 90 days, so the test writes around it).
ROTATION = datetime.fromtimestamp(KEYS.version(datetime.now(UTC)) * KEYS.period_s, UTC)



@pytest.fixture
def client(chdb_client):
    return chdb_client

class Topics(Consumed):
    def __init__(self) -> None:
        super().__init__(KEYS)

    def status(self, user: str, state: str, created_at: datetime, at: datetime, campaign: str, variant: str,
               channel: str = "push") -> None:
        self.add("notify.status", {
            "notification_id": f"{campaign}-1", "user_id": user, "channel": channel, "device_id": None,
            "status": state, "attempt": 1, "provider": None, "reason": None, "category": "marketing",
            "campaign_id": campaign, "variant": variant, "platform": None, "created_at": created_at, "at": at,
            "tenant": "acme"})

    def click(self, user: str, created_at: datetime, at: datetime, campaign: str, variant: str) -> None:
        self.add("notify.engagement", {
            "notification_id": f"{campaign}-1", "user_id": user, "action": "clicked", "action_id": None,
            "device_id": None, "channel": "push", "at": at, "campaign_id": campaign, "variant": variant,
            "category": "marketing", "created_at": created_at})


def test_a_notification_engaged_with_across_a_key_rotation_is_counted_once(client):
    topics, created = Topics(), ROTATION - timedelta(minutes=10, seconds=1)
    for n in range(40):  # 40 users reached 10 minutes before the rotation
        topics.status(f"user-{n}", "sent", created, ROTATION - timedelta(minutes=10), "spring", "A")
    for n in range(20, 25):  # five of them also get it into the center, just after the rotation
        topics.status(f"user-{n}", "delivered", created, ROTATION + timedelta(minutes=2), "spring", "A", "in_app")
    for n in range(20):  # 20 click just before it
        topics.click(f"user-{n}", created, ROTATION - timedelta(minutes=1), "spring", "A")
    for n in range(10):  # and 10 of them click again just after it
        topics.click(f"user-{n}", created, ROTATION + timedelta(minutes=1), "spring", "A")
    RawEvents(client).write(topics.items)

    assert client.query("SELECT reached, clicked, ctr FROM notifyflow.campaign_variants"
                        " WHERE campaign_id = 'spring'").result_rows == [(40, 20, 0.5)]
    # Different notifications of one user, either side of the rotation, stay unlinked.
    assert client.query("SELECT uniqExact(key_version) FROM notifyflow.events_raw").result_rows == [(1,)]


def test_an_engagement_without_the_notification_time_is_keyed_by_its_own_time(client):
    topics = Topics()
    topics.add("notify.engagement", {
        "notification_id": "old-1", "user_id": "alice", "action": "opened", "action_id": None, "device_id": None,
        "channel": "push", "at": ROTATION + timedelta(minutes=1), "campaign_id": None, "variant": None,
        "category": "messages", "created_at": None})
    RawEvents(client).write(topics.items)
    assert client.query("SELECT key_version, created_at = at FROM notifyflow.events_raw").result_rows == [
        (KEYS.version(ROTATION), 1)]


def test_the_ab_test_p_value_stays_positive_far_in_the_tail(client):
    topics, created = Topics(), ROTATION + timedelta(hours=1)
    for variant, clicks in (("A", 300), ("B", 500)):
        for n in range(1000):
            topics.status(f"{variant}-{n}", "sent", created, created, "tail", variant)
            if n < clicks:
                topics.click(f"{variant}-{n}", created, created + timedelta(minutes=5), "tail", variant)
    RawEvents(client).write(topics.items)

    [(z, p)] = client.query("SELECT ctr_z, ctr_p FROM notifyflow.ab_test WHERE campaign_id = 'tail'").result_rows
    pooled = 0.4
    expected_z = 0.2 / math.sqrt(pooled * (1 - pooled) * (2 / 1000))
    assert z == pytest.approx(expected_z) and abs(z) > 8.3
    assert p > 0 and p == pytest.approx(math.erfc(expected_z / math.sqrt(2)), rel=1e-6)
