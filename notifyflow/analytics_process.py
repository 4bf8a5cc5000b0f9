"""The analytics process: the analytics flow and the analysts' dashboard in one process.

In the embedded default only one process may open the chDB directory, so the flow's writer,
the lag sampler and the dashboard's read-only client all live here, each with its own client
on the shared engine (chDB allows that within one process). Against a ClickHouse server the
same process works unchanged over HTTP.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from bytewax.errors import BytewaxRuntimeError
from bytewax.recovery import RecoveryConfig
from bytewax.run import cli_main

from analytics import lag, pseudonym
from analytics.pseudonym import UserKeys
from analytics.server import serve
from connectors import clickhouse
from flows import analytics
from kernel import settings
from kernel.clock import utcnow
from notifyflow.migrate import migrate_clickhouse
from notifyflow.processes import init_recovery

LAG_EVERY_S = 10.0


@dataclass(frozen=True)
class Options:
    recovery_dir: Path
    keys: UserKeys
    host: str = "127.0.0.1"
    port: int = 8100
    snapshot_s: float = 5.0
    epsilon: float = 1.0  # Laplace noise of scale 1/epsilon on released counts below min_count
    min_count: int = 20
    flow_metrics: dict[str, str] = field(default_factory=dict)


def options(recovery_dir: Path, *, host: str, port: int, snapshot_s: float, epsilon: float | None = None,
            environ=os.environ) -> Options:
    """The process's settings with the environment's (ANALYTICS_*); ValueError names a wrong one."""
    try:
        epsilon = float(environ.get("ANALYTICS_DP_EPSILON", "1")) if epsilon is None else epsilon
        min_count = int(environ.get("ANALYTICS_DP_MIN_COUNT", "20"))
    except ValueError:
        raise ValueError("ANALYTICS_DP_EPSILON must be a number, ANALYTICS_DP_MIN_COUNT a whole number") from None
    if epsilon <= 0:
        raise ValueError("epsilon must be positive")
    return Options(recovery_dir, pseudonym.from_env(environ), host, port, snapshot_s, epsilon, min_count,
                   lag.endpoints(environ.get("ANALYTICS_FLOW_METRICS", "")))


def run(config: settings.Settings, options: Options, on_step: Callable[[str], None] = lambda step: None) -> None:
    """Blocks until interrupted (SIGINT stops the flow at its next step and the process exits)."""
    on_step("applying ClickHouse DDL")
    migrate_clickhouse(config.clickhouse_url)
    writer = clickhouse.client(config.clickhouse_url)
    writer.insert("notifyflow.privacy", [[utcnow(), options.epsilon, options.min_count]],
                  column_names=["set_at", "epsilon", "min_count"])
    on_step("starting the dashboard")
    dashboard = serve(options.host, options.port, lambda: clickhouse.client(config.clickhouse_url, readonly=True))
    stop = threading.Event()
    threading.Thread(target=sample_lag, args=(writer, options.flow_metrics, stop), name="lag-sampler",
                     daemon=True).start()
    on_step(f"dashboard at http://{options.host}:{dashboard.server_address[1]}/")
    init_recovery(options.recovery_dir)
    try:
        cli_main(analytics.build(config, options.keys), workers_per_process=1, epoch_interval=timedelta(seconds=options.snapshot_s),
                 recovery_config=RecoveryConfig(str(options.recovery_dir)))
    except BytewaxRuntimeError as exc:
        if not isinstance(exc.__cause__, KeyboardInterrupt):  # Ctrl-C is how the process is meant to stop
            raise
    finally:
        stop.set()
        dashboard.shutdown()


def sample_lag(client, flows: dict[str, str], stop: threading.Event) -> None:
    while not stop.wait(LAG_EVERY_S):
        if rows := lag.sample(flows, utcnow()):
            client.insert("notifyflow.flow_lag", rows, column_names=["sampled_at", "flow", "topic", "partition", "lag"])
