"""Avro schemas of the notifyflow topics (one .avsc per event type) and their codec."""

from .codec import SCHEMA_NAMES, AvroCodec, CodecError, load_schema

__all__ = ["SCHEMA_NAMES", "AvroCodec", "CodecError", "load_schema"]
