"""Where the shell prints: results on stdout, progress and errors on stderr."""

from __future__ import annotations

import base64
from datetime import datetime

from rich.console import Console

console = Console()
err_console = Console(stderr=True)


class UserError(Exception):
    """A mistake the user can fix; printed as one line, never as a traceback."""


def printable(value):
    """JSON for what JSON lacks: times as ISO-8601, bytes as base64."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    raise TypeError(f"cannot print {type(value).__name__}")
