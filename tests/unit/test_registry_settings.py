"""The Schema Registry's credentials and TLS settings reach every registry client the project builds
(every codec gets its registry from kernel.topics.registry_client). The Kafka clients' settings, a
secured cluster's included, are tests/unit/test_kafka_settings.py's."""

from __future__ import annotations

from kernel import topics


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
