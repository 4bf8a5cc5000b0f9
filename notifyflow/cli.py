"""The `notifyflow` command: set up real servers, run the local stack, send notifications, read topics,
replay dead letters, export and erase users, apply retention."""

from __future__ import annotations

import base64
import errno
import json
import os
import signal
import sys
import threading
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Optional

import httpx
import psycopg
import redis
import typer
from clickhouse_connect.driver.exceptions import ProgrammingError
from confluent_kafka import KafkaException
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn
from rich.table import Table

from connectors.kafka import read_topic
from kernel import logs, settings
from kernel.clock import parse_time
from kernel.requests import DEFAULT_TENANT, from_json, notification_request
from kernel.topics import DLQ, EVENTS, codec_for
from notifyflow import demo as demo_run, dlq as dead_letters, explain, retention as retention_job, userdata
from notifyflow.admin import keys_app, policies_app, senders_app, tenant_name
from notifyflow.console import UserError, console, err_console, printable
from notifyflow.processes import FlowError
from notifyflow.publish import publish_requests
from notifyflow.setup import SetupError, setup
from notifyflow.stack import StackError, running_stack
from schemas import CodecError

app = typer.Typer(help=__doc__, no_args_is_help=True, pretty_exceptions_enable=False)
app.command()(setup)
app.command()(explain.explain)
stack_app = typer.Typer(help="The local stack of embedded servers.", no_args_is_help=True)
app.add_typer(stack_app, name="stack")
analytics_app = typer.Typer(help="Without a command: run the analytics flow into ClickHouse and serve its dashboard "
                                 "until Ctrl-C. `sql`: run SQL on live data.", invoke_without_command=True)
app.add_typer(analytics_app, name="analytics")
dlq_app = typer.Typer(help="Dead letters: list by stage and reason, replay a selection.", invoke_without_command=True)
app.add_typer(dlq_app, name="dlq")
user_app = typer.Typer(help="GDPR: export or erase everything stored about a user.", no_args_is_help=True)
app.add_typer(user_app, name="user")
for name, commands in (("senders", senders_app), ("policies", policies_app), ("keys", keys_app)):
    app.add_typer(commands, name=name)
ANALYTICS_URL = os.environ.get("NOTIFYFLOW_ANALYTICS_URL", "http://127.0.0.1:8100")
TenantOption = Annotated[str, typer.Option(help="The user's tenant: a user is (tenant, id).", callback=tenant_name)]


@stack_app.command("up")
def stack_up() -> None:
    """Start every service the environment does not provide; stop them all on Ctrl-C."""
    with running_stack() as stack:
        settings.write_env_file(settings.stack_file(), stack.urls)
        try:
            table = Table("variable", "url", title="notifyflow local stack")
            for name, url in stack.urls.items():
                table.add_row(name, url)
            console.print(table)
            console.print(f"written to {settings.stack_file()}; press Ctrl-C to stop")
            stopped = threading.Event()
            signal.signal(signal.SIGTERM, lambda *_: stopped.set())
            try:
                stopped.wait()
            except KeyboardInterrupt:
                pass
        finally:
            settings.stack_file().unlink(missing_ok=True)


@app.command()
def demo() -> None:
    """Start the local stack, the notification flow, the in-app delivery flows and analytics, send the
    samples, and show what the flows decided, what reached the notification center, and the analytics."""
    demo_run.run()


@app.command()
def send(
    user: Annotated[Optional[str], typer.Option(help="Recipient user id.")] = None,
    title: Annotated[Optional[str], typer.Option(help="Notification title.")] = None,
    body: Annotated[str, typer.Option(help="Notification body.")] = "",
    category: Annotated[str, typer.Option(help="Category, e.g. messages, security, marketing.")] = "general",
    priority: Annotated[str, typer.Option(help="low | normal | high | critical")] = "normal",
    type: Annotated[str, typer.Option(help="info | warning | error | success | marketing")] = "info",
    file: Annotated[Optional[Path], typer.Option(help="JSON file with one request or a list of them.")] = None,
    count: Annotated[int, typer.Option(help="Send this many copies (each with its own id).")] = 1,
) -> None:
    """Publish NotificationRequested events to notify.events."""
    config = settings.load()
    if file is not None:
        try:
            loaded = json.loads(file.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"cannot read {file}: {exc}") from exc
        requests = [from_json(item) for item in (loaded if isinstance(loaded, list) else [loaded])]
    elif user and title:
        requests = [notification_request(user_id=user, title=title, body=body, category=category,
                                         priority=priority, type=type) for _ in range(count)]
    else:
        raise UserError("give --user and --title, or --file")
    publish_requests(config, requests)


@app.command()
def tail(
    topic: Annotated[str, typer.Argument(help=f"Topic to read, e.g. {EVENTS}.")],
    max_messages: Annotated[Optional[int], typer.Option("--max", help="Stop after this many.")] = None,
    idle: Annotated[float, typer.Option(help="Stop after this many seconds without a record.")] = 3.0,
) -> None:
    """Decode and print a topic's records from the beginning, one JSON object per line."""
    config = settings.load()
    codec = codec_for(topic, config.schema_registry_url)
    for message in read_topic(config.kafka_bootstrap_servers, topic, idle_timeout_s=idle,
                              max_messages=max_messages):
        try:
            value = codec.decode(message.value())
        except CodecError as exc:
            value = {"undecodable": exc.reason}
        print(json.dumps({"partition": message.partition(), "offset": message.offset(),
                          "key": (message.key() or b"").decode(errors="replace"), "value": value},
                         default=printable), flush=True)


@dlq_app.callback()
def dlq(
    ctx: typer.Context,
    idle: Annotated[float, typer.Option(help="Stop after this many seconds without a record.")] = 3.0,
    show: Annotated[int, typer.Option(help="How many of the newest dead letters to list.")] = 20,
) -> None:
    """Dead letters grouped by stage and reason, then the newest ones."""
    if ctx.invoked_subcommand is not None:
        return
    config = settings.load()
    letters = read_dead_letters(config, idle)
    replayed = dead_letters.replayed(config, letters)
    done = Counter((d["stage"], d["reason"]) for d in letters if dead_letters.source(d) in replayed)
    groups = Table("stage", "reason", "count", "replayed", title=f"{len(letters)} dead letters")
    for (stage, reason), n in Counter((d["stage"], d["reason"]) for d in letters).most_common():
        groups.add_row(stage, reason, str(n), str(done[stage, reason]))
    console.print(groups)
    newest = Table("last seen", "source", "stage", "reason", "attempts", title="newest")
    for d in sorted(letters, key=lambda d: d["last_seen"])[-show:]:
        newest.add_row(d["last_seen"].isoformat(), f"{d['topic']}[{d['partition']}]@{d['offset']}",
                       d["stage"], d["reason"], str(d["attempts"]))
    console.print(newest)


def read_dead_letters(config: settings.Settings, idle: float) -> list[dict]:
    with err_console.status(f"reading {DLQ}"):
        return dead_letters.read(config, idle)


def time_option(value: Optional[str], name: str) -> Optional[datetime]:
    try:
        return parse_time(value)
    except ValueError:
        raise UserError(f"{name} {value!r} is not an ISO-8601 time, e.g. 2026-11-26T04:00:00+00:00") from None


@dlq_app.command("replay")
def dlq_replay(
    stage: Annotated[Optional[str], typer.Option(help="Dead letters of this stage (decode, validate, render, ...).")] = None,
    reason: Annotated[Optional[str], typer.Option(help="Dead letters whose reason contains this text.")] = None,
    topic: Annotated[Optional[str], typer.Option(help="Only those read from this source topic.")] = None,
    since: Annotated[Optional[str], typer.Option(help="Only those last seen at or after this ISO-8601 time.")] = None,
    until: Annotated[Optional[str], typer.Option(help="Only those last seen before this ISO-8601 time.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the counts, publish and record nothing.")] = False,
    idle: Annotated[float, typer.Option(help="Stop reading after this many seconds without a record.")] = 3.0,
) -> None:
    """Re-publish selected dead letters (original key and bytes) to their source topic, each at most once."""
    config = settings.load()
    selection = dead_letters.Selection(stage=stage, reason=reason, topic=topic, since=time_option(since, "--since"),
                                       until=time_option(until, "--until"))
    letters = read_dead_letters(config, idle)
    selection.check_stage(letters)
    chosen = dead_letters.select(letters, selection)
    refused = [letter for letter in chosen if not dead_letters.replayable(letter)]
    with err_console.status(f"replaying {len(chosen) - len(refused)} dead letters"):
        published = dead_letters.replay(config, [letter for letter in chosen if dead_letters.replayable(letter)],
                                        dry_run=dry_run)
    table = Table("source topic", "would replay" if dry_run else "replayed",
                  title=f"{len(chosen)} dead letters match ({len(letters)} in {DLQ})")
    for name, n in sorted(published.items()):
        table.add_row(name, str(n))
    console.print(table)
    console.print(f"{len(chosen) - len(refused) - sum(published.values())} already replayed before, skipped")
    if refused:
        console.print(f"{len(refused)} not replayed: from a compacted or unknown topic, where a replay would "
                      "overwrite newer state (or an erasure); publish the current state instead")


def user_id(value: str) -> str:
    if not value.strip():
        raise typer.BadParameter("the user id is empty")
    return value


@user_app.command("export")
def user_export(
    user: Annotated[str, typer.Argument(help="The user id.", callback=user_id)], tenant: TenantOption = DEFAULT_TENANT,
    idle: Annotated[float, typer.Option(help="Stop reading a topic after this many seconds without a record.")] = 3.0,
    analytics_url: Annotated[str, typer.Option(help="The analytics process, for the user's ClickHouse rows "
                                                    "($NOTIFYFLOW_ANALYTICS_URL).")] = ANALYTICS_URL,
) -> None:
    """Print everything stored about the user as one JSON document (empty parts for an unknown user)."""
    config = settings.load()
    with err_console.status("exporting") as status:
        data = userdata.export(config, user, tenant=tenant, idle_timeout_s=idle, on_step=status.update)
        status.update("reading ClickHouse through the analytics process")
        try:
            data["clickhouse"] = {"events_raw": userdata.analytics_rows(analytics_url, user, datetime.now(UTC), tenant)}
        except httpx.HTTPError as exc:
            err_console.print(f"[yellow]warning:[/yellow] no analytics process at {analytics_url} ({exc}): "
                              "ClickHouse rows not exported; start one with `notifyflow analytics`")
            data["clickhouse"] = None
    print(json.dumps(data, default=printable, indent=2, ensure_ascii=False))


@user_app.command("erase")
def user_erase(
    user: Annotated[str, typer.Argument(help="The user id.", callback=user_id)], tenant: TenantOption = DEFAULT_TENANT,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    idle: Annotated[float, typer.Option(help="Stop reading a topic after this many seconds without a record.")] = 3.0,
) -> None:
    """Erase the user from PostgreSQL, Redis, the flows' state and ClickHouse (via the erasure tombstone)."""
    config = settings.load()
    if not yes:
        typer.confirm(f"Erase everything stored about {user} of {tenant}? This cannot be undone", abort=True)
    with err_console.status("erasing") as status:
        counts = userdata.erase(config, user, tenant=tenant, idle_timeout_s=idle, on_step=status.update)
    table = Table("where", "removed", title=f"erased {user} of {tenant}")
    for where, n in counts.items():
        table.add_row(where, str(n))
    console.print(table)
    console.print("the flows drop the user's state and ClickHouse rows when they read the tombstone")


@app.command()
def retention() -> None:
    """Delete notification history older than 30 days and other expired per-user data (run daily)."""
    config = settings.load()
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=err_console, transient=True) as bar:
        tasks = {rule.what: bar.add_task(rule.what) for rule in retention_job.RULES}
        counts = retention_job.run(config.database_url, datetime.now(UTC), on_progress=lambda rule, deleted: bar.update(
            tasks[rule.what], description=f"{rule.what}: {deleted} deleted"))
    table = Table("what", "kept", "deleted", title="retention")
    for rule in retention_job.RULES:
        table.add_row(rule.what, f"{rule.keep.days} days", str(counts[rule.what]))
    console.print(table)


@app.command()
def gateway(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    demo_mode: Annotated[bool, typer.Option("--demo", help="Serve the demo page and hand out demo tokens "
                                                             "(never where real users are).")] = False,
    log_level: Annotated[str, typer.Option(help="uvicorn log level: debug, info, warning, error.")] = "info",
    workers: Annotated[int, typer.Option(help="Processes sharing the port (SO_REUSEPORT), each with its own "
                                              "descriptors and memory.")] = 1,
) -> None:
    """Run the real-time gateway against the services in the environment (or `notifyflow stack up`)."""
    from gateway.app import verifier_from_env
    from notifyflow.gateway_server import serve

    settings.load()  # fail here, with a clear message, rather than inside the server
    if demo_mode:
        os.environ["GATEWAY_DEMO"] = "1"
        os.environ.setdefault("GATEWAY_JWT_SECRET", base64.urlsafe_b64encode(os.urandom(32)).decode())
        console.print(f"demo page: http://{host}:{port}/?user=alice")
    verifier_from_env()
    serve(host, port, workers, log_level)


@analytics_app.callback()
def analytics(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address the dashboard listens on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the dashboard and the SQL endpoint.")] = 8100,
    recovery: Annotated[Optional[Path], typer.Option(help="Recovery store of the flow "
                                                          "(default: $NOTIFYFLOW_HOME/analytics-recovery).")] = None,
    snapshot: Annotated[float, typer.Option(help="Seconds between snapshots of the flow.")] = 5.0,
    epsilon: Annotated[Optional[float], typer.Option(help="Differential-privacy epsilon of released counts "
                                                          "(default: $ANALYTICS_DP_EPSILON or 1).")] = None,
) -> None:
    """Run the analytics flow and serve the dashboard (http://HOST:PORT/) until Ctrl-C."""
    if ctx.invoked_subcommand is not None:
        return
    from notifyflow import analytics_process

    config = settings.load()
    try:
        options = analytics_process.options(recovery or settings.home() / "analytics-recovery", host=host, port=port,
                                  snapshot_s=snapshot, epsilon=epsilon)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    try:
        analytics_process.run(config, options, on_step=lambda step: console.print(f"[dim]{step}[/]"))
    except OSError as exc:
        if exc.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
            raise
        raise UserError(f"cannot serve the dashboard on {host}:{port}: {exc.strerror}") from exc
    except ProgrammingError as exc:  # chDB refuses a directory another process has open
        raise UserError(f"cannot open {config.clickhouse_url}: only one process may open a chDB directory; "
                        "is another `notifyflow analytics` (or a flow) using it?") from exc


@analytics_app.command("sql")
def analytics_sql(
    query: Annotated[str, typer.Argument(help="One read-only SQL query, e.g. \"SELECT * FROM notifyflow.ab_test\".")],
    url: Annotated[str, typer.Option(help="The analytics process ($NOTIFYFLOW_ANALYTICS_URL).")] = ANALYTICS_URL,
) -> None:
    """Run SQL on live analytics data through the running analytics process; print a table."""
    try:
        response = httpx.post(f"{url.rstrip('/')}/api/sql", content=query.encode(), timeout=60)
    except httpx.HTTPError as exc:
        raise UserError(f"no analytics process at {url} ({exc}); start one with `notifyflow analytics`") from exc
    body = response.json()
    if response.status_code != 200:
        raise UserError(body.get("error", response.text))
    table = Table(*body["columns"])
    for row in body["rows"]:
        table.add_row(*("" if value is None else str(value) for value in row))
    console.print(table)


def main() -> None:
    logs.install()
    try:
        app()
    except (UserError, SetupError, settings.SettingsError, StackError, FlowError, CodecError, KafkaException, KeyError,
            dead_letters.SelectionError, psycopg.OperationalError, redis.ConnectionError) as exc:
        reason = exc.reason if isinstance(exc, CodecError) else exc.args[0] if exc.args else exc
        err_console.print(f"[red]error:[/red] {escape(str(reason))}")  # a reason may hold "[redacted]"
        sys.exit(2)


if __name__ == "__main__":
    main()
