"""Channel selection: where a notification goes now, and where it escalates if unseen.

Every notification lands in the in-app center (the user's history) when in-app is allowed.
The interruptive channels (push, email, SMS, webhook) are scored from urgency, presence,
the devices the user has and the order of the user's own channel settings; how many are
used at once, and how many wait in the fallback chain, depends on priority. Channel affinity:
for a treated user's non-urgent notification, the channel among those allowed that the user
answers clearly most often (flows/profile.py) goes first; preferences always decide what is allowed.
"""

from __future__ import annotations

from flows import profile
from flows.learning import DEFAULTS, NON_URGENT, Learning, treated
from kernel.keyed import explained, finished
from kernel.policy import escalation_delays

INTERRUPTIVE = ("push", "email", "sms", "webhook")
BASE_SCORE = {"push": 3.0, "email": 2.0, "sms": 1.0, "webhook": 2.5}
SENT_NOW = {"critical": len(INTERRUPTIVE), "high": 1, "normal": 1, "low": 0}


def available(channel: str, item: dict) -> bool:
    user, request = item["user"], item["request"]
    if channel == "push":
        return any(device["token"] or device["web_push"] for device in user["devices"])
    if channel == "email":
        return bool(user["preferences"]["email"])
    if channel == "sms":
        return bool(user["preferences"]["phone"])
    if channel == "webhook":  # only on the sender's explicit request; the endpoint belongs to the tenant
        return "webhook" in request["channels"]
    return True


def score(channel: str, item: dict, now: bool = True) -> float:
    """How good `channel` is for the item: to send `now`, or later if what was sent goes unseen."""
    points = BASE_SCORE[channel]
    if item["priority"] == "critical" and channel == "sms":
        points += 2.5  # costly and intrusive: only worth it when it is urgent
    if now and item["user"]["online"] and channel == "push":
        points -= 1.5  # the user is looking at the app already; the in-app toast tells them
    order = item["user"]["preferences"]["channels"]  # a dict, in the user's order
    if channel in order:
        points += 0.5 * (len(order) - list(order).index(channel))
    return points


def select(item: dict, learning: Learning = DEFAULTS) -> dict:
    if item.get("escalation"):  # its channel was chosen when it escalated
        return keep_route(item)
    hints = item["request"]["channels"]
    allowed = [c for c in item["channels"] if available(c, item) and (not hints or c in hints)]
    if not allowed:
        return finished(item, "dropped", "no allowed channel can reach the user")
    if item["priority"] in ("low", "normal") and "sms" not in hints and len(allowed) > 1:
        # Texts cost money and wake people: not for routine news unless the sender asks for SMS.
        allowed = [c for c in allowed if c != "sms"]
    ranked = sorted((c for c in allowed if c in INTERRUPTIVE), key=lambda c: -score(c, item))
    if (preferred := by_affinity(ranked, item, learning)) is not None:
        channel, why = preferred
        ranked = [channel] + [c for c in ranked if c != channel]
        item = explained(item, why)
    if item["priority"] == "normal" and item["user"]["online"] and "in_app" in allowed:
        now_count = 0  # online: the toast comes first, push and email only if it goes unseen
    else:
        now_count = SENT_NOW[item["priority"]]
    send = (["in_app"] if "in_app" in allowed else []) + ranked[:now_count]
    if not send:
        send = ranked[:1]
    # Unseen after all, the user is not looking at the app: presence no longer argues against push.
    later = sorted((c for c in ranked if c not in send), key=lambda c: -score(c, item, now=False))
    delays = escalation_delays(item["request"]["category"], item["priority"],
                               tenant=item["request"]["tenant"]) if later else ()
    fallback = [{"channel": channel, "after_seconds": delays[min(i, len(delays) - 1)]}
                for i, channel in enumerate(later)] if delays else []
    return {**item, "route": {"send": send, "fallback": fallback}}


def keep_route(item: dict) -> dict:
    """A held digest or escalation goes out where it was routed, if the user still allows that channel
    and can be reached there; a digest falls back to the notification center."""
    send = [c for c in item["route"]["send"] if c in item["channels"] and available(c, item)]
    if not send and item.get("digest_items") and "in_app" in item["channels"]:
        send = ["in_app"]
    if not send:
        return finished(item, "dropped", f"{', '.join(item['route']['send'])} no longer allowed or reachable")
    return {**item, "route": {**item["route"], "send": send}}


AFFINITY_MIN_DELIVERED = 3.0  # notifications on a channel before its answer rate counts
AFFINITY_MARGIN = 0.1  # how much more often the user must answer there than on the first-ranked channel


def by_affinity(ranked: list[str], item: dict, learning: Learning) -> tuple[str, str] | None:
    """(channel, why) when the user answers another allowed channel clearly more than the first-ranked."""
    learned = item["user"].get("profile") or {}
    # One channel's history alone never beats the others (they lean on its rate): nothing to compare.
    if len(ranked) < 2 or len(learned.get("channels") or ()) < 2 or item["priority"] not in NON_URGENT \
            or not treated(item, "affinity", learning):
        return None
    rates, overall = profile.answer_rates(learned, item["request"]["metadata"]["created_at"], learning.half_life_s)
    known = [c for c in ranked if c in rates and rates[c][1] >= AFFINITY_MIN_DELIVERED]
    if not known:
        return None
    best = max(known, key=lambda c: rates[c][0])
    first = rates.get(ranked[0], (overall, 0.0))[0]
    if best == ranked[0] or rates[best][0] < first + AFFINITY_MARGIN:
        return None
    return best, f"{best} chosen by affinity: answered {rates[best][0]:.0%}, {ranked[0]} {first:.0%}"
