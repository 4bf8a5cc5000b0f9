"""Where the services are: environment variables first, then the file `notifyflow stack up` wrote.

Real deployments set the variables; on a laptop the local stack writes them to
`$NOTIFYFLOW_HOME/stack.env` (default `./.notifyflow/stack.env`) so every command finds them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

SERVICE_VARS = ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "REDIS_URL", "CLICKHOUSE_URL")


class SettingsError(RuntimeError):
    """A service location is missing; the message says how to provide it."""


def home() -> Path:
    return Path(os.environ.get("NOTIFYFLOW_HOME", ".notifyflow")).resolve()


def stack_file() -> Path:
    return home() / "stack.env"


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def write_env_file(path: Path, values: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{name}={value}\n" for name, value in values.items()))


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap_servers: str
    database_url: str
    redis_url: str
    clickhouse_url: str
    # Confluent wire format when set (a registry URL, or mock:// in tests); plain Avro otherwise.
    schema_registry_url: str | None = None


def load() -> Settings:
    from_file = read_env_file(stack_file()) if stack_file().exists() else {}
    values = {name: os.environ.get(name) or from_file.get(name) for name in SERVICE_VARS}
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise SettingsError(
            f"{', '.join(missing)} not set and no local stack file at {stack_file()}: "
            "start one with `notifyflow stack up` or export the variables"
        )
    return Settings(
        kafka_bootstrap_servers=values["KAFKA_BOOTSTRAP_SERVERS"],
        database_url=values["DATABASE_URL"],
        redis_url=values["REDIS_URL"],
        clickhouse_url=values["CLICKHOUSE_URL"],
        schema_registry_url=os.environ.get("SCHEMA_REGISTRY_URL") or from_file.get("SCHEMA_REGISTRY_URL"),
    )
