"""`notifyflow explain NOTIFICATION_ID`: the decisions taken for one notification, as the statuses on
notify.status say them (held for the best send time until when, capped for fatigue, the channel chosen by
affinity, quiet hours, digests, escalations, sends), oldest first."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from connectors.kafka import read_topic
from kernel import settings
from kernel.topics import STATUS, codec_for
from notifyflow.console import console, err_console
from schemas import CodecError


def decisions(config: settings.Settings, notification_id: str, idle_s: float) -> list[dict]:
    """Every status of the notification on the status topic, oldest first."""
    codec, found = codec_for(STATUS, config.schema_registry_url), []
    for message in read_topic(config.kafka_bootstrap_servers, STATUS, idle_timeout_s=idle_s, deadline_s=600):
        try:
            status = codec.decode(message.value())
        except CodecError:
            continue  # not a status this command can read; the flows dead-letter such records
        if status["notification_id"] == notification_id:
            found.append(status)
    return sorted(found, key=lambda status: status["at"])


def explain(
    notification_id: Annotated[str, typer.Argument(help="The notification's id (a request id, or a digest's).")],
    idle: Annotated[float, typer.Option(help="Stop reading after this many seconds without a record.")] = 3.0,
) -> None:
    """Print the decisions taken for one notification, and why, from the status topic."""
    found = decisions(settings.load(), notification_id, idle)
    if not found:
        err_console.print(f"[red]error:[/red] no status of notification {escape(notification_id)} on {STATUS}")
        raise typer.Exit(2)
    first = found[0]
    table = Table("at", "status", "channel", "why", title=(
        f"notification {escape(notification_id)}: {escape(first['category'])}, user {escape(first['user_id'])}, "
        f"cohort {first['cohort'] or '-'}{', best send time asked' if first['send_time'] else ''}"))
    for status in found:
        detail = status["reason"] or ""
        if status["provider"]:
            detail = f"{status['provider']} attempt {status['attempt']}" + (f": {detail}" if detail else "")
        table.add_row(status["at"].isoformat(timespec="seconds"), status["status"], status["channel"] or "",
                      escape(detail))
    console.print(table)
