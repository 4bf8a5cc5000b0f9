"""Clients for Kafka, PostgreSQL, Redis, ClickHouse and the delivery providers."""
