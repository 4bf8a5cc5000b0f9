"""The shape of the code: imports run down the floors, topic names are written once, modules stay small.

    shell    notifyflow/                               (may import anything below)
    stages   flows/  sinks/  analytics/  gateway/      (never each other, but the dataflow files)
    ground   kernel/ over schemas/, connectors/ over kernel/
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FLOORS = {"schemas": 0, "kernel": 1, "connectors": 2, "flows": 3, "sinks": 3, "analytics": 3, "gateway": 3,
          "notifyflow": 4}
STAGES = {"flows", "sinks", "analytics", "gateway"}
# The dataflow files wire the delivery sinks and the analytics writer into bytewax flows.
DATAFLOW_FILES = {"flows/notifications.py", "flows/delivery.py", "flows/analytics.py", "flows/wiring.py"}
# What the kernel must never need: an engine, a web framework, a provider SDK or a database client.
NOT_IN_KERNEL = {"bytewax", "starlette", "uvicorn", "firebase_admin", "pywebpush", "boto3", "botocore", "aiosmtplib",
                 "httpx", "psycopg", "psycopg_pool", "redis", "clickhouse_connect", "chdb", "jwt"}
TOPIC_NAME = re.compile(r"\bnotify\.(events|preferences|devices|presence|status|engagement|dlq|outbox)\b")
MAX_LINES = 350


def modules(*folders: str) -> list[Path]:
    return sorted(path for folder in folders for path in (REPO / folder).rglob("*.py"))


def name(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def imported(path: Path) -> set[str]:
    """Top-level names of everything the module imports, wherever in the module it does."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", modules(*FLOORS), ids=name)
def test_imports_run_down_the_floors(path):
    package = name(path).split("/")[0]
    for other in imported(path) & FLOORS.keys() - {package}:
        assert FLOORS[other] <= FLOORS[package], f"{name(path)} imports {other}, a floor above it"
        if package in STAGES and other in STAGES:
            assert name(path) in DATAFLOW_FILES and other in {"sinks", "analytics"}, \
                f"{name(path)} imports the stage {other}: stages share only what is below them"


@pytest.mark.parametrize("path", modules("kernel"), ids=name)
def test_the_kernel_needs_no_engine_framework_or_provider(path):
    assert not imported(path) & NOT_IN_KERNEL, name(path)


@pytest.mark.parametrize("path", modules("schemas", "kernel", "connectors", "sinks", "analytics", "gateway"), ids=name)
def test_only_the_dataflow_files_import_bytewax(path):
    assert "bytewax" not in imported(path), name(path)


def string_literals(path: Path) -> list[str]:
    """Every string constant but docstrings (which may name topics to explain them)."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    return [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant)
            and isinstance(node.value, str) and id(node) not in docstrings]


def test_topic_names_are_written_in_one_module():
    writers = {name(path) for path in modules(*FLOORS, "peers")
               if any(TOPIC_NAME.search(text) for text in string_literals(path))}
    assert writers == {"kernel/topics.py"}


@pytest.mark.parametrize("path", [p for p in REPO.rglob("*.py")
                                  if not {"tests", ".venv", ".git"} & set(p.relative_to(REPO).parts)], ids=name)
def test_modules_stay_small(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES, f"{name(path)}: split it by job"
