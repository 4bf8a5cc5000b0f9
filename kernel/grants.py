"""Sender grants: what each sender (a request's `metadata.source_app`) may send in a tenant.

A grant names the categories (or any), the highest priority, the audience kinds (one user, a list
of users, a segment, a topic) and optionally a rate. It is looked up by (tenant, sender), most
specific first: the sender in the tenant, any sender of the tenant ('*'), the sender in any tenant,
then ('*', '*'). No grant at all refuses everything: a sender is let in, never left in by mistake.
The rate is enforced where requests are counted (flows/ingestion.py), the rest here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

ANY = "*"
PRIORITIES = ("low", "normal", "high", "critical")
AUDIENCE_KINDS = ("user", "list", "segment", "topic")


@dataclass(frozen=True)
class Grant:
    tenant: str
    source_app: str
    categories: tuple[str, ...] | None = None  # None: any category
    max_priority: str = "high"
    audiences: tuple[str, ...] = ("user", "list")
    per_minute: int | None = None  # None: the flow's default sender limit

    def __post_init__(self) -> None:
        if problem := grant_problem(self):
            raise ValueError(problem)

    def describe(self) -> str:
        categories = ", ".join(self.categories) if self.categories is not None else "any category"
        rate = f"{self.per_minute} a minute" if self.per_minute else "the default rate"
        return f"{categories}; up to {self.max_priority}; to {', '.join(self.audiences)}; {rate}"


def grant_problem(grant: Grant) -> str | None:
    if not grant.tenant.strip() or not grant.source_app.strip():
        return "tenant and sender must not be empty"
    if grant.max_priority not in PRIORITIES:
        return f"priority {grant.max_priority!r} is not one of {', '.join(PRIORITIES)}"
    if unknown := [kind for kind in grant.audiences if kind not in AUDIENCE_KINDS]:
        return f"audience kind {unknown[0]!r} is not one of {', '.join(AUDIENCE_KINDS)}"
    if not grant.audiences:
        return "a grant needs at least one audience kind"
    if grant.categories is not None and (not grant.categories or not all(c.strip() for c in grant.categories)):
        return "categories must be named (or left out for any category)"
    if grant.per_minute is not None and grant.per_minute <= 0:
        return "the rate must be a positive number a minute"
    return None


Grants = Mapping[tuple[str, str], Grant]


def grant_for(grants: Grants, tenant: str, source_app: str) -> Grant | None:
    for key in ((tenant, source_app), (tenant, ANY), (ANY, source_app), (ANY, ANY)):
        if key in grants:
            return grants[key]
    return None


def audience_kinds(request: Mapping) -> list[str]:
    """The kinds of audience a (validated) request addresses: one user, or its audience's parts."""
    if request["user_id"]:
        return ["user"]
    audience = request["audience"] or {}
    return [kind for kind, part in (("list", "user_ids"), ("segment", "segment"), ("topic", "topic"))
            if audience.get(part)]


def refusal(grants: Grants, request: Mapping) -> str | None:
    """Why the request's sender may not send it, naming what was refused; None when it may."""
    tenant, sender = request["tenant"], request["metadata"]["source_app"]
    grant = grant_for(grants, tenant, sender)
    if grant is None:
        return f"sender {sender} has no grant in tenant {tenant}"
    if grant.categories is not None and request["category"] not in grant.categories:
        return (f"sender {sender} of tenant {tenant} may not send category {request['category']} "
                f"(granted: {', '.join(grant.categories)})")
    if PRIORITIES.index(request["priority"]) > PRIORITIES.index(grant.max_priority):
        return (f"sender {sender} of tenant {tenant} may not send priority {request['priority']} "
                f"(granted up to {grant.max_priority})")
    for kind in audience_kinds(request):
        if kind not in grant.audiences:
            return (f"sender {sender} of tenant {tenant} may not send to a {kind} audience "
                    f"(granted: {', '.join(grant.audiences)})")
    return None


def rate_of(grants: Grants, request: Mapping) -> int | None:
    """The per-minute rate the sender's grant sets, if any."""
    grant = grant_for(grants, request["tenant"], request["metadata"]["source_app"])
    return grant.per_minute if grant else None
