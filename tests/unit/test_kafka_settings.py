"""Kafka client settings (connectors/kafka.py client_config): the project's latency defaults, then the
environment — a secured cluster's credentials and tuning — reach every producer, consumer and admin
client the project builds, bytewax's sources and sinks included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from connectors import kafka
from connectors.kafka import DEFAULTS, client_config
from flows.wiring import kafka_sink, kafka_source

REPO = Path(__file__).resolve().parents[2]
SECURED = {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
           "KAFKA_SASL_USERNAME": "notifyflow", "KAFKA_SASL_PASSWORD": "s3cret", "KAFKA_SSL_CA_LOCATION": "/ca.pem",
           "KAFKA_SSL_CERTIFICATE_LOCATION": "/client.pem", "KAFKA_SSL_KEY_LOCATION": "/client.key",
           "KAFKA_SSL_KEY_PASSWORD": "keypass"}
CREDENTIALS = {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "notifyflow",
               "sasl.password": "s3cret", "ssl.ca.location": "/ca.pem", "ssl.certificate.location": "/client.pem",
               "ssl.key.location": "/client.key", "ssl.key.password": "keypass"}


def test_defaults_are_the_latency_settings_and_nothing_is_secured_without_the_environment():
    assert client_config("consumer", {}) == {"fetch.wait.max.ms": "10"}
    assert client_config("producer", {})["linger.ms"] == "1"
    assert client_config("admin", {}) == {}


def test_the_environment_reaches_every_kind_and_each_kind_its_own():
    environ = {**SECURED, "KAFKA_BOOTSTRAP_SERVERS": "kafka:9092", "KAFKA_CONSUMER_FETCH_WAIT_MAX_MS": "100",
               "KAFKA_PRODUCER_LINGER_MS": "20", "KAFKA_PRODUCER_COMPRESSION_TYPE": "zstd",
               "KAFKA_SSL_CRL_LOCATION": ""}  # empty: not set
    assert client_config("consumer", environ) == {**CREDENTIALS, "fetch.wait.max.ms": "100"}
    assert client_config("producer", environ) == {**DEFAULTS["producer"], **CREDENTIALS, "linger.ms": "20",
                                                  "compression.type": "zstd"}
    assert client_config("admin", environ) == CREDENTIALS  # no producer or consumer property, no brokers


def secured(monkeypatch) -> None:
    for name, value in SECURED.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("KAFKA_CONSUMER_FETCH_WAIT_MAX_MS", "25")


def test_the_project_builders_apply_them(monkeypatch):
    secured(monkeypatch)
    built = []

    class Recorder:
        def __init__(self, config):
            built.append(config)

        def list_topics(self, *args, **kwargs):
            raise RuntimeError("enough")

    for name in ("Producer", "Consumer", "AdminClient"):
        monkeypatch.setattr(kafka, name, Recorder)
    kafka.producer("kafka:9092")  # the CLI's, the gateway's (preferences, devices, the HTTP front door), replay
    with pytest.raises(RuntimeError, match="enough"):
        kafka.TopicReader("kafka:9092", ["notify.status"])  # tail, dlq, export, tests
    with pytest.raises(RuntimeError, match="enough"):
        kafka.ensure_topics("kafka:9092")  # setup
    with pytest.raises(RuntimeError, match="enough"):
        kafka.topic_partitions("kafka:9092")  # the flows' ingestion shares
    assert [config.items() >= CREDENTIALS.items() for config in built] == [True, True, True, True]
    assert built[1]["fetch.wait.max.ms"] == "25" and "fetch.wait.max.ms" not in built[0]
    # bytewax builds its clients from add_config: its sources are consumers, its sinks producers.
    assert kafka_source(["kafka:9092"], ["notify.events"]).config == {**CREDENTIALS, "fetch.wait.max.ms": "25"}
    assert kafka_sink(["kafka:9092"])._add_config.items() >= CREDENTIALS.items()


CLIENT_CLASSES = {"Producer", "Consumer", "AdminClient", "KafkaSource", "KafkaSink"}
BUILDERS = {"connectors/kafka.py", "flows/wiring.py", "flows/kafka_input.py", "notifyflow/stack.py"}


@pytest.mark.parametrize("path", [p for folder in ("kernel", "connectors", "flows", "sinks", "analytics", "gateway",
                                                   "notifyflow") for p in (REPO / folder).rglob("*.py")],
                         ids=lambda p: p.relative_to(REPO).as_posix())
def test_no_other_module_builds_a_kafka_client_of_its_own(path):
    calls = {node.func.id if isinstance(node.func, ast.Name) else node.func.attr
             for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Call)
             and isinstance(node.func, (ast.Name, ast.Attribute))}
    if calls & CLIENT_CLASSES:
        assert path.relative_to(REPO).as_posix() in BUILDERS
