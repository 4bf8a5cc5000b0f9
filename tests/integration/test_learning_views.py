"""The readouts of what the flow learns, on the real ClickHouse engine (chDB, in this process): best send
time (sto_uplift) and fatigue (fatigue_effect), treated against the holdout, with the A/B readout's
two-proportion z-test; and their released (dashboard) versions."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from analytics_harness import Consumed

from analytics.pseudonym import UserKeys
from analytics.store import RawEvents

KEYS = UserKeys(b"learning-views-secret-0123456789")
CREATED = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)



@pytest.fixture
def client(chdb_client):
    return chdb_client

class Events(Consumed):
    def __init__(self) -> None:
        super().__init__(KEYS)

    def notification(self, user: str, nid: str, cohort: str, category: str, optimal: bool, *actions: str,
                     statuses: tuple[str, ...] = ("requested",)) -> None:
        for n, state in enumerate(statuses):
            self.add("notify.status", {
                "notification_id": nid, "user_id": user, "channel": "push", "device_id": None, "status": state,
                "attempt": 0, "provider": None, "reason": None, "category": category, "campaign_id": None,
                "variant": None, "platform": None, "created_at": CREATED, "at": CREATED + timedelta(minutes=n),
                "tenant": "acme", "cohort": cohort, "send_time": "optimal" if optimal else None})
        for action in actions:
            self.add("notify.engagement", {
                "notification_id": nid, "user_id": user, "action": action, "action_id": None, "device_id": None,
                "channel": "push", "at": CREATED + timedelta(hours=1), "campaign_id": None, "variant": None,
                "category": category, "created_at": CREATED, "tenant": "acme"})


def z_and_p(x1: int, n1: int, x2: int, n2: int) -> tuple[float, float]:
    pooled = (x1 + x2) / (n1 + n2)
    z = (x2 / n2 - x1 / n1) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return z, math.erfc(abs(z) / math.sqrt(2))


def test_sto_uplift_compares_optimised_sends_of_treated_users_with_the_holdout(client):
    events = Events()
    # 100 each; treated: 60 opened (30 of them clicked), 2 unsubscribed; holdout: 40 opened (20 clicked), 5.
    for cohort, opened, clicked, unsubscribed in (("treated", 60, 30, 2), ("holdout", 40, 20, 5)):
        for n in range(100):
            actions = (("clicked",) if n < clicked else ("opened",) if n < opened else ()) + (
                ("unsubscribed",) if n >= 100 - unsubscribed else ())
            statuses = ("deferred", "requested") if cohort == "treated" else ("requested",)
            events.notification(f"{cohort}-{n}", f"{cohort}-n{n}", cohort, "social", True, *actions, statuses=statuses)
    events.notification("treated-0", "not-optimal", "treated", "social", False, "opened")
    events.notification("treated-0", "held-only", "treated", "social", True, statuses=("deferred",))
    events.notification("nobody", "no-cohort", "", "social", True, "opened")
    RawEvents(client).write(events.items)

    [row] = client.query("SELECT treated, holdout, treated_open_rate, holdout_open_rate, open_uplift, open_z, open_p,"
                         " treated_click_rate, click_p, treated_unsubscribe_rate, unsubscribe_z, unsubscribe_p"
                         " FROM notifyflow.sto_uplift").result_rows
    open_z, open_p = z_and_p(40, 100, 60, 100)
    _, click_p = z_and_p(20, 100, 30, 100)
    unsubscribe_z, unsubscribe_p = z_and_p(5, 100, 2, 100)
    assert row[:5] == (100, 100, 0.6, 0.4, pytest.approx(1.5))
    assert row[5:] == pytest.approx((open_z, open_p, 0.3, click_p, 0.02, unsubscribe_z, unsubscribe_p))
    # The dashboard's version: these counts are above the noise threshold (none is set here), p exact.
    assert client.query("SELECT treated, holdout, open_uplift, open_p FROM notifyflow.released_sto_uplift"
                        ).result_rows == [(100, 100, pytest.approx(1.5), pytest.approx(open_p))]


def test_fatigue_effect_compares_what_each_user_got_and_ignored_per_category(client):
    events = Events()
    for n in range(30):  # 10 treated users, 3 each, half opened
        events.notification(f"t-{n % 10}", f"t-{n}", "treated", "social", False, *(("opened",) if n % 2 else ()))
    for n in range(60):  # 10 holdout users, 6 each, 16 opened
        events.notification(f"h-{n % 10}", f"h-{n}", "holdout", "social", False, *(("opened",) if n < 16 else ()))
    for n in range(10):  # what fatigue held back went out in treated users' digests
        events.notification(f"t-{n}", f"digest-{n}", "treated", "digest", False, "opened")
    RawEvents(client).write(events.items)

    rows = client.query("SELECT category, treated_users, holdout_users, treated_per_user, holdout_per_user,"
                        " treated_ignored_per_user, holdout_ignored_per_user, treated_opens_per_user,"
                        " holdout_opens_per_user, ignored_z, ignored_p FROM notifyflow.fatigue_effect ORDER BY category"
                        ).result_rows
    ignored_z, ignored_p = z_and_p(44, 60, 15, 30)
    assert rows[0][:3] == ("digest", 10, 0)
    assert rows[1][:9] == ("social", 10, 10, 3.0, 6.0, 1.5, 4.4, 1.5, 1.6)
    assert rows[1][9:] == pytest.approx((ignored_z, ignored_p))
    assert client.query("SELECT category, treated_ignored_per_user, holdout_ignored_per_user"
                        " FROM notifyflow.released_fatigue_effect WHERE category = 'social'").result_rows == [
        ("social", 1.5, 4.4)]
