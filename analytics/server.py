"""The analysts' dashboard and SQL endpoint, served by the analytics process (which, in the embedded
default, is the one process that may open the chDB engine).

    GET  /             the dashboard page (plain HTML and SVG, no build step, nothing from the internet)
    GET  /api/kpis     the dashboard's figures for the last ?minutes= (default 60), small counts noised
    POST /api/sql      the request body as one read-only SQL query -> {"columns": [...], "rows": [...]}
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import date, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import parse_qs, urlparse

from clickhouse_connect.driver.exceptions import ClickHouseError

PAGE = resources.files("analytics") / "dashboard.html"
MAX_ROWS = 10_000
# Each figure of the page, over the last {minutes} minutes. Counts come from the released_* views.
KPIS = {
    "series": "SELECT minute, sum(requested) AS requested, sum(succeeded) AS succeeded, sum(failed) AS failed,"
              " sum(opened) AS opened, sum(clicked) AS clicked FROM notifyflow.released_minute"
              " WHERE minute >= now() - INTERVAL {minutes} MINUTE GROUP BY minute ORDER BY minute",
    "channels": "SELECT channel, sum(succeeded) AS succeeded, sum(failed) AS failed,"
                " succeeded / nullIf(succeeded + failed, 0) AS success_rate,"
                " sum(unsubscribed) / nullIf(succeeded, 0) AS unsubscribe_rate FROM notifyflow.released_minute"
                " WHERE minute >= now() - INTERVAL {minutes} MINUTE AND channel != '' GROUP BY channel ORDER BY channel",
    "latency": "SELECT channel, q[1] AS p50_ms, q[2] AS p95_ms, q[3] AS p99_ms FROM ("
               " SELECT channel, quantilesTDigest(0.5, 0.95, 0.99)(latency_ms) AS q FROM notifyflow.events_raw"
               " WHERE toStartOfMinute(at) >= now() - INTERVAL {minutes} MINUTE AND status IN ('sent', 'delivered')"
               " AND channel != '' GROUP BY channel) ORDER BY channel",
    "campaigns": "SELECT * FROM notifyflow.released_campaigns ORDER BY campaign_id, variant",
    "failures": "SELECT channel, provider, status, reason, sum(failures) AS failures FROM notifyflow.released_failures"
                " WHERE hour >= toStartOfHour(now() - INTERVAL {minutes} MINUTE)"
                " GROUP BY channel, provider, status, reason ORDER BY failures DESC LIMIT 10",
    "lag": "SELECT flow, topic, lag, sampled_at FROM notifyflow.queue_lag ORDER BY flow, topic",
    # What the flow learns from engagement against its holdout, over all retained rows.
    "sto": "SELECT * FROM notifyflow.released_sto_uplift",
    "fatigue": "SELECT * FROM notifyflow.released_fatigue_effect ORDER BY category",
}


def plain(value):
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value


def table(client, sql: str) -> dict:
    result = client.query(sql, settings={"max_result_rows": MAX_ROWS, "result_overflow_mode": "break"})
    return {"columns": list(result.column_names),
            "rows": [[plain(v) for v in row] for row in result.result_rows]}


class Dashboard(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], readonly_client: Callable[[], object]) -> None:
        super().__init__(address, Handler)
        self.client = readonly_client()
        self.lock = threading.Lock()  # one read-only client, one query at a time

    def query(self, sql: str) -> dict:
        with self.lock:
            return table(self.client, sql)


class Handler(BaseHTTPRequestHandler):
    server: Dashboard

    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path == "/":
            self.reply(HTTPStatus.OK, PAGE.read_bytes(), "text/html; charset=utf-8")
        elif url.path == "/api/kpis":
            try:
                minutes = max(1, min(int(parse_qs(url.query).get("minutes", ["60"])[0]), 90 * 24 * 60))
            except ValueError:
                return self.json(HTTPStatus.BAD_REQUEST, {"error": "minutes must be a whole number"})
            try:
                kpis = {name: self.server.query(sql.format(minutes=minutes)) for name, sql in KPIS.items()}
            except ClickHouseError as exc:  # e.g. a ClickHouse server that is down: the page says so
                return self.json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": str(exc).split("\n")[0]})
            self.json(HTTPStatus.OK, kpis)
        elif url.path == "/health":
            self.json(HTTPStatus.OK, {"ok": True})
        else:
            self.json(HTTPStatus.NOT_FOUND, {"error": f"no page at {url.path}"})

    def do_POST(self) -> None:
        if urlparse(self.path).path != "/api/sql":
            return self.json(HTTPStatus.NOT_FOUND, {"error": "POST SQL to /api/sql"})
        sql = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode(errors="replace").strip()
        if not sql:
            return self.json(HTTPStatus.BAD_REQUEST, {"error": "send one SQL query as the request body"})
        try:
            self.json(HTTPStatus.OK, self.server.query(sql))
        except ClickHouseError as exc:
            self.json(HTTPStatus.BAD_REQUEST, {"error": str(exc).split("\n")[0]})

    def json(self, status: HTTPStatus, body: dict) -> None:
        self.reply(status, json.dumps(body, default=str).encode(), "application/json")

    def reply(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_) -> None:
        """Requests are not worth a log line each."""


def serve(host: str, port: int, readonly_client: Callable[[], object]) -> Dashboard:
    server = Dashboard((host, port), readonly_client)
    threading.Thread(target=server.serve_forever, name="dashboard", daemon=True).start()
    return server
