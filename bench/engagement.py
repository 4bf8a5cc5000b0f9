"""What learning from engagement is worth: simulated users through the real per-user steps.

    python -m bench.engagement [--users N] [--days D] [--holdout PERCENT] [--seed S]

Every simulated user runs through the notification flow's per-user steps (flows/notifications.py
per_user_steps: user state, the engagement profile, dedup, preferences, quiet hours, best send time,
render, channels and affinity, caps and fatigue, digests, escalation), on a simulated clock: requests,
the steps' timers and the user's engagement, in time order, for D days (default 30). A deterministic
holdout (default 20 % of users, by the flow's own hash) gets the plain behaviour. Requests enter as the
flow's intake leaves them (decoded and validated records), without Kafka or Avro.

The model (seeded; every user drawn independently):
- a time zone (New York, Los Angeles, Paris, Kolkata, Tokyo or UTC); quiet hours 22:00-07:00 for 40 %;
- a personal active hour, uniform in 08:00-21:00 local (90 minutes later at weekends); activity at
  local time h is 0.05 + 0.95 exp(-d^2 / 4.5), d the hours between h and that hour;
- channel habits: 70 % notice push 90 % of the time when active and email 30 %, the others the reverse;
- interest: news 0.5-0.9, social 0.3-0.9 (uniform), digests 0.8;
- every day one `news` notification (normal priority, `send_time: optimal`) and 2-9 `social` ones
  (normal priority), created at uniformly random times, each expiring after two days;
- fatigue: a user tolerates 2-4 social notifications a day; past that (counting those delivered in the
  previous 24 h) interest in each further one is multiplied by 0.2, and noticed ones are dismissed
  within seconds instead of opened;
- a delivery at time t on channel c is noticed, with probability activity(t) x notice(c), after an
  exponential delay (mean 3 minutes), and then opened with probability interest (else dismissed);
  unnoticed, it is opened at the user's next active hour with probability 0.5 x interest, else never.
  An escalation (the flow's: email 5 minutes after an unanswered push) is a second chance to notice.

Reported, treated against holdout users:
- sto_open_rate, holdout_open_rate: share of news notifications opened; uplift their ratio;
- fatigue_ignored_cut: 1 - (social messages, digests included, delivered and never opened, per treated
  user) / (the same per holdout user); opens_kept: social messages (digests included) opened per treated
  user over per holdout user. A digest opened counts as one open, however many notifications it lists.

Last line: sto_open_rate=<r> holdout_open_rate=<r> uplift=<x> fatigue_ignored_cut=<r> opens_kept=<r>
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from flows.learning import Learning, cohort
from flows.notifications import per_user_steps
from flows.render import catalog_from_env
from kernel.records import source
from kernel.requests import device_record, notification_request, preferences_record
from kernel.topics import DEVICES, EVENTS, PREFERENCES

START = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday; the USA and Europe change clocks during the run
ZONES = ("America/New_York", "America/Los_Angeles", "Europe/Paris", "Asia/Kolkata", "Asia/Tokyo", "UTC")
TENANT = "bench"
FATIGUED, CATCH_UP, DIGEST_INTEREST, NOTICE_DELAY_S = 0.2, 0.5, 0.8, 180
INTERRUPTIVE = ("push", "email", "sms", "webhook")


@dataclass
class Person:
    user_id: str
    zone: ZoneInfo
    peak: float
    quiet: bool
    notice: dict[str, float]
    interest: dict[str, float]
    social_per_day: int
    tolerance: int
    delivered_social: deque = field(default_factory=deque)

    @classmethod
    def draw(cls, n: int, rng: random.Random) -> Person:
        push_first = rng.random() < 0.7
        return cls(f"user-{n}", ZoneInfo(rng.choice(ZONES)), rng.uniform(8, 21), rng.random() < 0.4,
                   {"push": 0.9 if push_first else 0.3, "email": 0.3 if push_first else 0.9, "in_app": 0.2},
                   {"news": rng.uniform(0.5, 0.9), "social": rng.uniform(0.3, 0.9), "digest": DIGEST_INTEREST},
                   rng.randint(2, 9), rng.randint(2, 4))

    def peak_at(self, local: datetime) -> float:
        return self.peak + (1.5 if local.weekday() >= 5 else 0)

    def activity(self, at: datetime) -> float:
        local = at.astimezone(self.zone)
        distance = abs(local.hour + local.minute / 60 - self.peak_at(local)) % 24
        distance = min(distance, 24 - distance)
        return 0.05 + 0.95 * math.exp(-distance * distance / 4.5)

    def next_active(self, at: datetime) -> datetime:
        """The start of the user's next active hour after `at`."""
        moment = at.replace(minute=0, second=0, microsecond=0)
        for _ in range(48):
            moment += timedelta(hours=1)
            local = moment.astimezone(self.zone)
            if abs(local.hour - int(self.peak_at(local))) == 0:
                return moment
        return moment


@dataclass
class Tally:
    news: int = 0
    news_opened: int = 0
    users: int = 0
    social_messages: int = 0
    social_ignored: int = 0
    social_opens: int = 0


class Simulation:
    def __init__(self, person: Person, steps, rng: random.Random, days: int, tally: Tally) -> None:
        self.person, self.steps, self.rng, self.days, self.tally = person, steps, rng, days, tally
        self.state, self.events, self.seq = steps.new_state(), [], 0
        self.fates: dict[str, dict] = {}  # notification id -> what the user does with it

    def at(self, moment: datetime, kind: str, payload) -> None:
        self.seq += 1
        heapq.heappush(self.events, (moment, self.seq, kind, payload))

    def run(self) -> None:
        person = self.person
        prefs = preferences_record(person.user_id, timezone=person.zone.key, email=f"{person.user_id}@example.com",
                                   updated_at=START, quiet_hours={"start_time": "22:00", "end_time": "07:00",
                                                                  "timezone": person.zone.key, "days": []}
                                   if person.quiet else None)
        phone = device_record(person.user_id, "phone", "android", token=f"token-{person.user_id}", registered_at=START)
        self.steps.process(self.state, [
            {"kind": "user_state", "topic": PREFERENCES, "user_id": person.user_id, "record": prefs},
            {"kind": "user_state", "topic": DEVICES, "user_id": person.user_id, "record": phone}], START)
        n = 0
        for day in range(self.days):
            for category in ["news"] + ["social"] * person.social_per_day:
                n += 1
                created = START + timedelta(days=day, seconds=self.rng.randrange(86_400))
                self.at(created, "request", (n, category))
        end = START + timedelta(days=self.days + 1)
        while self.events and self.events[0][0] < end:
            moment, _, kind, payload = heapq.heappop(self.events)
            while (due := self.steps.due(self.state)) is not None and due <= moment:
                self.decided(self.steps.release(self.state, due), due)
            if kind == "request":
                self.decided(self.steps.process(self.state, [self.request(moment, *payload)], moment), moment)
            else:
                self.decided(self.steps.process(self.state, [payload], moment), moment)

    def request(self, created: datetime, n: int, category: str) -> dict:
        record = notification_request(
            user_id=self.person.user_id, title=f"{category} {n}", body=f"something new, number {n}", category=category,
            tenant=TENANT, send_time="optimal" if category == "news" else None, audience=None, channels=[],
            scheduled_at=None, idempotency_key=None, locale=None, template_id=None, template_vars={})
        record["content"].update(image_url=None, icon=None, badge=None, actions=[])
        record["metadata"].update(created_at=created, expires_at=created + timedelta(days=2), deep_link=None,
                                  payload={}, campaign_id=None)
        key = self.person.user_id.encode()
        return {"kind": "notification", "user_id": self.person.user_id, "request": record,
                "source": source(EVENTS, 0, n, key, b"")}

    def decided(self, items: list[dict], now: datetime) -> None:
        for item in items:
            if item.get("outcome"):
                continue
            send = item["route"]["send"]
            channel = next((c for c in send if c in INTERRUPTIVE), send[0])
            if item.get("escalation"):
                self.second_chance(item["notification_id"], channel, now)
            else:
                self.delivered(item, channel, now)

    def delivered(self, item: dict, channel: str, now: datetime) -> None:
        person = self.person
        entries = len(item.get("digest_items") or ())
        category = "digest" if entries else item["request"]["category"]
        interest = person.interest[category]
        if category == "social":
            recent = person.delivered_social
            while recent and now - recent[0] > timedelta(days=1):
                recent.popleft()
            if len(recent) >= person.tolerance:
                interest *= FATIGUED
            recent.append(now)
        fate = self.fates[item["notification_id"]] = {"category": category, "entries": entries, "opened": False,
                                                      "interest": interest, "engaged": False}
        if category == "news":
            self.tally.news += 1
        else:
            self.tally.social_messages += 1
        self.notice(item["notification_id"], fate, channel, now, catch_up=True)

    def second_chance(self, notification_id: str, channel: str, now: datetime) -> None:
        fate = self.fates.get(notification_id)
        if fate is not None and not fate["engaged"]:
            self.notice(notification_id, fate, channel, now, catch_up=False)

    def notice(self, notification_id: str, fate: dict, channel: str, now: datetime, catch_up: bool) -> None:
        person, rng = self.person, self.rng
        if rng.random() < person.activity(now) * person.notice.get(channel, 0.2):
            fate["engaged"] = True
            if rng.random() < fate["interest"]:
                self.engage(notification_id, fate, "opened", channel,
                            now + timedelta(seconds=rng.expovariate(1 / NOTICE_DELAY_S)))
            else:
                fatigued = fate["interest"] < person.interest.get(fate["category"], 1)
                delay = rng.uniform(1, 5) if fatigued else rng.expovariate(1 / NOTICE_DELAY_S)
                self.engage(notification_id, fate, "dismissed", channel, now + timedelta(seconds=delay))
        elif catch_up and rng.random() < CATCH_UP * fate["interest"]:
            later = person.next_active(now) + timedelta(minutes=rng.uniform(0, 60))
            self.engage(notification_id, fate, "opened", channel, later)

    def engage(self, notification_id: str, fate: dict, action: str, channel: str, at: datetime) -> None:
        if action == "opened" and not fate["opened"]:
            fate["opened"] = True
            if fate["category"] == "news":
                self.tally.news_opened += 1
            else:
                self.tally.social_opens += 1
        self.at(at, "engagement", {"kind": "engagement", "user_id": self.person.user_id, "record": {
            "notification_id": notification_id, "user_id": self.person.user_id, "action": action, "action_id": None,
            "device_id": "phone", "channel": channel, "at": at, "campaign_id": None, "variant": None,
            "category": fate["category"], "created_at": None}})

    def finish(self) -> None:
        self.tally.users += 1
        self.tally.social_ignored += sum(1 for fate in self.fates.values()
                                         if fate["category"] != "news" and not fate["opened"])


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=400)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--holdout", type=float, default=20.0, help="percent of users in the holdout")
    parser.add_argument("--seed", type=int, default=15)
    args = parser.parse_args()
    learning = Learning(holdout_percent=args.holdout)
    steps = per_user_steps(catalog_from_env(), learning)
    tallies = {"treated": Tally(), "holdout": Tally()}
    started = time.monotonic()
    for n in range(args.users):
        rng = random.Random(args.seed * 1_000_003 + n)
        person = Person.draw(n, rng)
        simulation = Simulation(person, steps, rng, args.days, tallies[cohort(TENANT, person.user_id, args.holdout)])
        simulation.run()
        simulation.finish()
    treated, holdout = tallies["treated"], tallies["holdout"]
    sto, plain = ratio(treated.news_opened, treated.news), ratio(holdout.news_opened, holdout.news)
    ignored_cut = 1 - ratio(ratio(treated.social_ignored, treated.users), ratio(holdout.social_ignored, holdout.users))
    opens_kept = ratio(ratio(treated.social_opens, treated.users), ratio(holdout.social_opens, holdout.users))
    for name, tally in tallies.items():
        print(f"{name}: {tally.users} users, news {tally.news_opened}/{tally.news} opened, social messages "
              f"{tally.social_messages} ({tally.social_ignored} never opened), social opens {tally.social_opens}")
    print(f"{args.users} users x {args.days} days simulated in {time.monotonic() - started:.0f} s")
    print(f"sto_open_rate={sto:.3f} holdout_open_rate={plain:.3f} uplift={ratio(sto, plain):.2f} "
          f"fatigue_ignored_cut={ignored_cut:.3f} opens_kept={opens_kept:.3f}")


if __name__ == "__main__":
    main()
