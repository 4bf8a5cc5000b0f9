"""`notifyflow senders`, `notifyflow policies`, `notifyflow keys`: who may send what, how each tenant's
categories behave, and the HTTP front door's API keys. All kept in PostgreSQL; running flows and
gateways follow changes within NOTIFYFLOW_CONFIG_TTL_S (default 5 s) for grants and policies, at
once for keys."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from connectors import postgres
from connectors.config_tables import read_grants, read_policy_settings, reset_policy, revoke_grant, save_grant, \
    save_policy
from kernel import settings
from kernel.apikeys import new_key
from kernel.grants import ANY, AUDIENCE_KINDS, PRIORITIES, Grant
from kernel.policy import POLICIES, builtin
from kernel.requests import tenant_problem
from notifyflow.console import UserError, console

senders_app = typer.Typer(help="Sender grants: what each sender (source_app) may send in a tenant.",
                          no_args_is_help=True)
policies_app = typer.Typer(help="Category policies per tenant (merge, caps, excess, digest, escalation).",
                           no_args_is_help=True)
keys_app = typer.Typer(help="API keys of the HTTP front door (POST /v1/notifications), one sender each.",
                       no_args_is_help=True)


def tenant_name(value: str | None) -> str | None:
    """A tenant typed on the command line, held to the rule every tenant follows wherever it comes in."""
    if value is not None and (reason := tenant_problem(value)):
        raise UserError(reason)
    return value


def tenant_or_any(value: str | None) -> str | None:
    return value if value == ANY else tenant_name(value)


TENANT = Annotated[str, typer.Argument(help="The tenant ('*': every tenant).", callback=tenant_or_any)]
ONE_TENANT = Annotated[str, typer.Argument(help="The tenant.", callback=tenant_name)]
SENDER = Annotated[str, typer.Argument(help="The sender, a request's metadata.source_app ('*': every sender).")]


def database():
    return postgres.connect(settings.load().database_url)


@senders_app.command("grant")
def senders_grant(
    tenant: TENANT, sender: SENDER,
    category: Annotated[Optional[list[str]], typer.Option(help="A category it may send (repeat; none: any).")] = None,
    max_priority: Annotated[str, typer.Option(help=f"The highest priority: {', '.join(PRIORITIES)}.")] = "high",
    audience: Annotated[Optional[list[str]], typer.Option(
        help=f"An audience kind it may address (repeat): {', '.join(AUDIENCE_KINDS)}; default user and list.")] = None,
    per_minute: Annotated[Optional[int], typer.Option(help="Its rate (default: NOTIFYFLOW_SENDER_PER_MINUTE).")] = None,
) -> None:
    """Give the sender this grant in the tenant (replacing the one it had)."""
    try:
        grant = Grant(tenant, sender, tuple(category) if category else None, max_priority,
                      tuple(audience or ("user", "list")), per_minute)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    with database() as db:
        save_grant(db, grant)
    console.print(f"granted {escape(sender)} in {escape(tenant)}: {escape(grant.describe())}")


@senders_app.command("revoke")
def senders_revoke(tenant: TENANT, sender: SENDER) -> None:
    """Take the sender's grant in the tenant away (a wildcard grant may still cover it)."""
    with database() as db:
        if not revoke_grant(db, tenant, sender):
            raise UserError(f"{sender} has no grant of its own in {tenant}")
    console.print(f"revoked the grant of {escape(sender)} in {escape(tenant)}")


@senders_app.command("list")
def senders_list(tenant: Annotated[Optional[str], typer.Option(help="Only this tenant's.",
                                                                callback=tenant_or_any)] = None) -> None:
    """Every grant: tenant, sender, categories, highest priority, audience kinds, rate."""
    with database() as db:
        grants = read_grants(db)
    table = Table("tenant", "sender", "categories", "up to", "audiences", "per minute", title="sender grants")
    for (t, s), g in sorted(grants.items()):
        if tenant is None or t == tenant:
            table.add_row(t, s, ", ".join(g.categories) if g.categories else "any", g.max_priority,
                          ", ".join(g.audiences), str(g.per_minute or "default"))
    console.print(table)


def cap(value: Optional[str], name: str) -> Optional[int]:
    if value is None or value == "none":
        return None
    if not value.isdigit() or int(value) <= 0:
        raise UserError(f"{name} must be a positive whole number or none, not {value!r}")
    return int(value)


def escalation(values: list[str]) -> dict[str, list[int]]:
    delays = {}
    for value in values:
        priority, _, seconds = value.partition("=")
        try:
            delays[priority] = [int(s) for s in seconds.split(",")] if seconds else []
        except ValueError:
            raise UserError(f"--escalation {value!r}: write PRIORITY=SECONDS,SECONDS,... e.g. high=60,300") from None
    return delays


@policies_app.command("set")
def policies_set(
    tenant: ONE_TENANT,
    category: Annotated[str, typer.Argument(help="The category.")],
    merge: Annotated[Optional[str], typer.Option(help="count | replace | accumulate")] = None,
    per_hour: Annotated[Optional[str], typer.Option(help="Cap per user an hour, or none.")] = None,
    per_day: Annotated[Optional[str], typer.Option(help="Cap per user a day, or none.")] = None,
    excess: Annotated[Optional[str], typer.Option(help="What a capped notification becomes: digest | drop")] = None,
    digestible: Annotated[Optional[bool], typer.Option("--digestible/--not-digestible",
                                                       help="May wait for the user's digest.")] = None,
    send_time: Annotated[Optional[str], typer.Option(help="now | optimal (to each user's best hour) | off")] = None,
    fatigue: Annotated[Optional[bool], typer.Option("--fatigue/--no-fatigue",
                                                    help="An ignored category gets a lower cap.")] = None,
    affinity: Annotated[Optional[bool], typer.Option("--affinity/--no-affinity",
                                                     help="The channel the user answers most goes first.")] = None,
    escalate: Annotated[Optional[list[str]], typer.Option("--escalation", help="Delays before each next "
                        "channel, e.g. high=60,300 (repeat per priority: high, normal).")] = None,
) -> None:
    """Change the tenant's policy for the category; what is not given keeps its current value."""
    given = {"merge": merge, "excess": excess, "digestible": digestible, "send_time": send_time,
             "fatigue": fatigue, "affinity": affinity}
    changes = {name: value for name, value in given.items() if value is not None}
    changes |= {name: cap(value, f"--{name.replace('_', '-')}") for name, value in
                (("per_hour", per_hour), ("per_day", per_day)) if value is not None}
    if escalate:
        changes["escalation"] = escalation(escalate)
    if not changes:
        raise UserError("nothing to change: give --merge, --per-hour, --per-day, --excess, --digestible, "
                        "--send-time, --fatigue, --affinity or --escalation")
    with database() as db:
        try:
            policy = save_policy(db, tenant, category, changes)
        except ValueError as exc:
            raise UserError(str(exc)) from None
    console.print(f"{escape(tenant)} {escape(category)}: {escape(str(policy))}")


@policies_app.command("reset")
def policies_reset(tenant: ONE_TENANT,
                   category: Annotated[str, typer.Argument(help="The category.")]) -> None:
    """Back to the built-in policy of the category."""
    with database() as db:
        if not reset_policy(db, tenant, category):
            raise UserError(f"{tenant} has no policy of its own for {category}")
    console.print(f"{escape(tenant)} {escape(category)}: built-in again")


@policies_app.command("list")
def policies_list(tenant: Annotated[Optional[str], typer.Option(help="Only this tenant's.",
                                                                 callback=tenant_name)] = None) -> None:
    """The built-in policies, then what each tenant changed."""
    table = Table("tenant", "category", "settings", title="category policies")
    for category in POLICIES:
        table.add_row("(built-in)", category, escape(str(builtin(category))))
    table.add_row("(built-in)", "(any other)", escape(str(builtin(""))))
    with database() as db:
        for (t, category), changes in sorted(read_policy_settings(db).items()):
            if tenant is None or t == tenant:
                table.add_row(t, category, escape(json.dumps(changes)))
    console.print(table)


@keys_app.command("create")
def keys_create(
    tenant: ONE_TENANT,
    sender: Annotated[str, typer.Argument(help="The sender (metadata.source_app) its requests come from.")],
    per_minute: Annotated[int, typer.Option(help="Notifications a minute this key may send.")] = 600,
) -> None:
    """Create an API key for the sender; the key is printed once and cannot be shown again."""
    if not sender.strip() or sender == ANY:
        raise UserError("an API key belongs to one named sender")
    if per_minute <= 0:
        raise UserError("--per-minute must be a positive whole number")
    key_id, key, digest = new_key()
    with database() as db:
        db.execute("INSERT INTO api_keys (key_id, tenant, source_app, secret_sha256, per_minute) "
                   "VALUES (%s, %s, %s, %s, %s)", (key_id, tenant, sender, digest, per_minute))
    console.print(f"key {key_id} for {escape(sender)} in {escape(tenant)}, {per_minute} a minute; "
                  "store it now, it is not shown again:", highlight=False)
    print(key)


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key's id (`keys list`).")]) -> None:
    """Revoke a key: its next request is refused."""
    with database() as db:
        if not db.execute("UPDATE api_keys SET revoked_at = now() WHERE key_id = %s AND revoked_at IS NULL",
                          (key_id,)).rowcount:
            raise UserError(f"no active key {key_id}")
    console.print(f"revoked key {escape(key_id)}")


@keys_app.command("list")
def keys_list(tenant: Annotated[Optional[str], typer.Option(help="Only this tenant's.",
                                                             callback=tenant_name)] = None) -> None:
    """Every key (never the key itself): id, tenant, sender, rate, created, revoked."""
    with database() as db:
        rows = db.execute("SELECT key_id, tenant, source_app, per_minute, created_at, revoked_at FROM api_keys "
                          "WHERE %(t)s::text IS NULL OR tenant = %(t)s ORDER BY tenant, source_app, created_at",
                          {"t": tenant}).fetchall()
    table = Table("key id", "tenant", "sender", "per minute", "created", "revoked", title="API keys")
    for key_id, t, s, rate, created, revoked in rows:
        table.add_row(key_id, t, s, str(rate), created.isoformat(timespec="seconds"),
                      revoked.isoformat(timespec="seconds") if revoked else "")
    console.print(table)
