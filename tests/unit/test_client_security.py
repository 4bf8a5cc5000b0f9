"""A secured cluster's settings (SASL, TLS with CA and client certificate) and the Schema Registry's
credentials reach every Kafka and registry client the project builds: the CLI's and the gateway's
producers, the readers, the admin clients, and bytewax's Kafka source and sink in every flow."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from connectors import kafka
from flows import wiring
from kernel import topics

KAFKA_ENV = {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
             "KAFKA_SASL_USERNAME": "notifyflow", "KAFKA_SASL_PASSWORD": "s3cret",
             "KAFKA_SSL_CA_LOCATION": "/etc/kafka/ca.pem", "KAFKA_SSL_CERTIFICATE_LOCATION": "/etc/kafka/client.pem",
             "KAFKA_SSL_KEY_LOCATION": "/etc/kafka/client.key", "KAFKA_SSL_KEY_PASSWORD": "keypass"}
EXPECTED = {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "notifyflow",
            "sasl.password": "s3cret", "ssl.ca.location": "/etc/kafka/ca.pem",
            "ssl.certificate.location": "/etc/kafka/client.pem", "ssl.key.location": "/etc/kafka/client.key",
            "ssl.key.password": "keypass"}


class Recorded:
    """Stands in for a confluent_kafka client class: keeps the configuration it was built with."""

    built: list[dict] = []

    def __init__(self, config: dict) -> None:
        Recorded.built.append(config)

    def list_topics(self, *args, **kwargs):
        return SimpleNamespace(topics={"t": SimpleNamespace(error=None, partitions={0: None})})

    def assign(self, partitions) -> None:
        pass


@pytest.fixture
def clients(monkeypatch):
    for name, value in KAFKA_ENV.items():
        monkeypatch.setenv(name, value)
    Recorded.built = []
    for cls in ("Producer", "Consumer", "AdminClient"):
        monkeypatch.setattr(kafka, cls, Recorded)
    return Recorded.built


def test_every_kafka_client_gets_the_security_settings(clients):
    kafka.producer("broker:9093")                 # CLI, gateway (preferences, devices, the HTTP front door), replay
    kafka.TopicReader("broker:9093", ["t"])       # tail, dlq, export, tests
    kafka.topic_partitions("broker:9093")         # setup
    kafka.ensure_topics("broker:9093", topics=[])
    assert len(clients) == 4
    for config in clients:
        assert EXPECTED.items() <= config.items(), config


def test_the_flows_kafka_source_and_sink_get_them(clients):
    # Every flow (notifications, delivery, analytics) reads and writes through these two.
    assert EXPECTED.items() <= wiring.kafka_source(["broker:9093"], ["t"]).config.items()
    assert EXPECTED.items() <= wiring.kafka_sink(["broker:9093"])._add_config.items()


def test_without_settings_clients_speak_plaintext_as_the_local_broker_does(monkeypatch):
    for name in KAFKA_ENV:
        monkeypatch.delenv(name, raising=False)
    for role in kafka.ROLES:
        assert not {key for key in kafka.client_config(role) if key.startswith(("security", "sasl", "ssl"))}


def test_the_schema_registry_client_gets_its_credentials_and_tls(monkeypatch):
    environ = {"SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": "key:secret", "SCHEMA_REGISTRY_SSL_CA_LOCATION": "/ca.pem",
               "SCHEMA_REGISTRY_SSL_CERTIFICATE_LOCATION": "/c.pem", "SCHEMA_REGISTRY_SSL_KEY_LOCATION": "/k.pem"}
    assert topics.registry_config("https://registry:8081", environ) == {
        "url": "https://registry:8081", "basic.auth.user.info": "key:secret", "ssl.ca.location": "/ca.pem",
        "ssl.certificate.location": "/c.pem", "ssl.key.location": "/k.pem"}
    assert topics.registry_config("https://r", {"SCHEMA_REGISTRY_USER": "u", "SCHEMA_REGISTRY_PASSWORD": "p"}) == {
        "url": "https://r", "basic.auth.user.info": "u:p"}
    # Every codec gets its registry from registry_client, which builds it from registry_config.
    built = []
    monkeypatch.setattr(topics.SchemaRegistryClient, "new_client", staticmethod(lambda conf: built.append(conf)))
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    topics.registry_client.cache_clear()
    try:
        topics.registry_client("https://registry.example:8081")
    finally:
        topics.registry_client.cache_clear()
    assert built == [topics.registry_config("https://registry.example:8081", environ)]
