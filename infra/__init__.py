"""Data, no code: SQL migrations, ClickHouse DDL, templates, sample users and requests, the Grafana dashboard."""
