"""Fan-out: a request for a list of users, a segment or a topic becomes one item per user.

Segment and topic membership is looked up once per batch, for every group the batch names,
so a burst of campaign requests costs one database round trip, not one per request. Groups belong to
a tenant: a segment named `beta` in one tenant has none of another tenant's members.
"""

from __future__ import annotations

from collections.abc import Callable

from kernel.keyed import finished

# {(tenant, "segment:beta" | "topic:releases")} -> {(tenant, group): user ids of that tenant}
MembersOf = Callable[[set[tuple[str, str]]], dict[tuple[str, str], list[str]]]


def groups_of(request: dict) -> list[str]:
    audience = request["audience"] or {}
    return [f"{kind}:{audience[kind]}" for kind in ("segment", "topic") if audience.get(kind)]


def expand(items: list[dict], members_of: MembersOf) -> list[dict]:
    wanted = {(item["request"]["tenant"], group) for item in items
              if not item.get("outcome") and not item["request"]["user_id"] for group in groups_of(item["request"])}
    members = members_of(wanted) if wanted else {}
    out = []
    for item in items:
        request = item["request"]
        # Validation lets a request for one user carry an audience record that names nobody.
        if item.get("outcome") or request["user_id"] or not request["audience"]:
            out.append(item)
            continue
        groups = groups_of(request)
        users = list(dict.fromkeys(request["audience"]["user_ids"] +
                                   [user for group in groups for user in members.get((request["tenant"], group), [])]))
        if not users:
            # The flow keys every item by user id, which must be a str: "" (no user) keeps the
            # dropped item keyable, and its status still carries user_id "".
            out.append(finished({**item, "user_id": ""}, "dropped", f"audience {', '.join(groups)} has no members"))
        out.extend({**item, "user_id": user, "request": {**request, "user_id": user, "audience": None}}
                   for user in users)
    return out
