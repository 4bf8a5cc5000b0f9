"""Delivery and engagement analytics in ClickHouse: rows, pseudonyms, storage, the analysts' dashboard."""
