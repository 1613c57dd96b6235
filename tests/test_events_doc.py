"""docs/events.md documents every event type, and its example consumer (docs/examples/consumer.py) works.

The consumer runs as its own process against the NATS server of the test session, on events that
the real relay published; it must apply each user event once, in version order, treat replays as
stale, and ack what it applied (a second run with the same durable name receives nothing).
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from outbox.events import EVENT_TYPES
from outbox.services import outbox_replay
from tests.factories import DefinitionFactory, TenantFactory, UserFactory
from tests.jetstream import stream_messages
from tests.outbox_helpers import drain_outbox
from users import services as user_services

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "events.md"
CONSUMER = REPO / "docs" / "examples" / "consumer.py"
KAFKA_CONSUMER = REPO / "docs" / "examples" / "kafka_consumer.py"


def run_consumer(url: str, stream: str, subject: str, state: Path, durable: str = "doc-test") -> dict:
    completed = subprocess.run(
        [
            sys.executable,
            str(CONSUMER),
            "--url",
            url,
            "--stream",
            stream,
            "--subject",
            subject,
            "--durable",
            durable,
            "--state",
            str(state),
            "--idle-exit",
            "1.5",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


# --- the document -------------------------------------------------------------------------------------
def test_every_event_type_is_documented_with_its_subject() -> None:
    text = DOC.read_text()
    for name, event in EVENT_TYPES.items():
        assert re.search(rf"^### `{name}`$", text, re.M), f"{name} has no section in docs/events.md"
        section = text.split(f"### `{name}`", 1)[1].split("\n### ", 1)[0]
        assert f"iam.<tenant id>.{event.aggregate_type}.{name}" in section, f"{name}: subject missing"
        example = json.loads(re.search(r"```json\n(.*?)\n```", section, re.S).group(1))
        assert example["type"] == name and example["aggregatetype"] == event.aggregate_type
        assert example["specversion"] == "1.0"
        for attribute in ("id", "source", "time", "subject", "tenantid", "aggregateid", "aggregateversion", "data"):
            assert attribute in example, f"{name}: example lacks {attribute}"


def test_the_document_states_the_guarantees_and_the_consumer_rules() -> None:
    text = DOC.read_text()
    for needle in (
        "at-least-once",
        "Nats-Msg-Id",
        "NATS_DUPLICATE_WINDOW_SECONDS",
        "aggregateversion",
        "parked",
        "fsync",
        "R3",
        "docs/examples/consumer.py",
        "docs/examples/kafka_consumer.py",
        "ce_id",
        "producer session",
        "Kafka transactions",
    ):
        assert needle.lower() in text.lower(), needle


# --- the example consumer -----------------------------------------------------------------------------
def load_consumer_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("example_consumer", CONSUMER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def envelope(event_id: str, version: int, event_type: str = "UserUpdated", aggregate: str = "u1") -> dict:
    return {
        "id": event_id,
        "type": event_type,
        "tenantid": "t1",
        "aggregatetype": "user",
        "aggregateid": aggregate,
        "aggregateversion": version,
        "data": {"version": version},
    }


def test_consumer_applies_by_version_and_dedupes_by_id() -> None:
    store = load_consumer_module().Store(None)
    assert store.apply(envelope("a", 1, "UserCreated")) == "applied"
    assert store.apply(envelope("a", 1, "UserCreated")) == "duplicate"
    assert store.apply(envelope("c", 3)) == "applied"
    assert store.apply(envelope("b", 2)) == "stale"  # late and older: must not overwrite v3
    assert store.apply(envelope("r", 3)) == "stale"  # a replay (new id, same version)
    assert store.apply(envelope("d", 4, "UserDeleted")) == "applied"
    assert store.aggregates["user:u1"]["deleted"] and store.aggregates["user:u1"]["version"] == 4
    assert store.apply(envelope("e", 3)) == "stale"  # the tombstone holds


@pytest.mark.nats
@pytest.mark.django_db(transaction=True)
def test_example_consumer_applies_real_events_once_and_acks_them(event_bus, tmp_path) -> None:  # type: ignore[no-untyped-def]
    tenant = TenantFactory(slug="acme")
    DefinitionFactory(tenant=tenant, key="clearance", type="integer")
    alice = UserFactory(tenant=tenant, external_id="alice", attributes={"clearance": 1})
    bob = UserFactory(tenant=tenant, external_id="bob")
    carol = UserFactory(tenant=tenant, external_id="carol")
    alice = user_services.user_update(user=alice, attributes={"clearance": 2})
    alice = user_services.user_update(user=alice, display_name="Alice")
    user_services.user_delete(user=bob)
    drain_outbox()
    # Replays carry new ids and the same versions: the consumer must see them as stale.
    assert outbox_replay(tenant_id=tenant.id, event_types=["UserCreated"]) == 3
    drain_outbox()

    stored = stream_messages(event_bus.url, settings.NATS_STREAM_NAME)
    user_events = [m for m in stored if m.envelope["aggregatetype"] == "user"]
    assert len(user_events) == 6 + 3

    state = tmp_path / "state.json"
    subject = f"{settings.NATS_SUBJECT_PREFIX}.*.user.*"
    summary = run_consumer(event_bus.url, settings.NATS_STREAM_NAME, subject, state)
    assert summary["applied"] == 6 and summary["stale"] == 3 and summary["invalid"] == 0, summary
    assert summary["aggregates"] == 3 and summary["live"] == 2, summary

    held = json.loads(state.read_text())["aggregates"]
    assert held[f"user:{alice.id}"]["version"] == alice.version == 3
    assert held[f"user:{alice.id}"]["data"]["display_name"] == "Alice"
    assert held[f"user:{alice.id}"]["data"]["attributes"] == {"clearance": 2}
    assert held[f"user:{bob.id}"]["deleted"] is True
    assert held[f"user:{carol.id}"]["version"] == 1

    # Everything was acked after it was applied: the same durable consumer has nothing left.
    again = run_consumer(event_bus.url, settings.NATS_STREAM_NAME, subject, state)
    assert again["applied"] == again["stale"] == again["duplicates"] == 0, again


@pytest.mark.nats
@pytest.mark.django_db(transaction=True)
def test_a_rejected_event_is_not_overtaken_by_later_events_of_its_aggregate(bus) -> None:  # type: ignore[no-untyped-def]
    """docs/events.md "Per-aggregate order": parking holds back the poison's own later events.

    The second event of the aggregate is small enough to be accepted; it must still wait for the
    first, or the stream would hold version 2 before version 1.
    """
    from datetime import timedelta

    from django.utils import timezone

    from outbox.models import OutboxEvent
    from outbox.relay import OutboxWorker

    bus.limit_message_size(4096)
    tenant = TenantFactory(slug="acme")
    DefinitionFactory(tenant=tenant, key="bio", type="string")
    drain_outbox()
    user = UserFactory(tenant=tenant, external_id="poison", attributes={"bio": "x" * 4000})  # v1: too large
    user_services.user_update(user=user, attributes={})  # v2: small

    result = OutboxWorker().run()
    assert result.event_errors == 1
    mine = OutboxEvent.objects.filter(aggregate_id=user.id).order_by("sequence")
    assert [row.status for row in mine] == ["pending", "pending"], "version 2 was published before version 1"

    # The operator raises the limit; the backed-off event becomes due; both go out, in order.
    bus.limit_message_size(-1 if bus.kind == "nats" else 1_000_000)
    mine.update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    drain_outbox()
    stored = bus.messages()  # Kafka: by partition then offset, and the aggregate has one partition
    versions = [m.envelope["aggregateversion"] for m in stored if m.envelope["aggregateid"] == str(user.id)]
    assert versions == [1, 2]


def run_kafka_consumer(bootstrap: str, topic: str, state: Path) -> dict:
    arguments = ["--bootstrap", bootstrap, "--topic", topic, "--state", str(state), "--idle-exit", "1.5"]
    completed = subprocess.run(
        [sys.executable, str(KAFKA_CONSUMER), *arguments],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.mark.django_db(transaction=True)
def test_example_kafka_consumer_applies_real_events_once_and_resumes(kafka_bus, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """docs/examples/kafka_consumer.py on what the relay produced to a real Kafka-compatible broker,
    re-publications (same ids: Kafka keeps both copies) and replays (new ids, old versions) included."""
    from outbox.models import OutboxEvent
    from outbox.services import outbox_requeue

    tenant = TenantFactory(slug="acme")
    DefinitionFactory(tenant=tenant, key="clearance", type="integer")
    alice = UserFactory(tenant=tenant, external_id="alice", attributes={"clearance": 1})
    bob = UserFactory(tenant=tenant, external_id="bob")
    UserFactory(tenant=tenant, external_id="carol")
    alice = user_services.user_update(user=alice, attributes={"clearance": 2})
    alice = user_services.user_update(user=alice, display_name="Alice")
    user_services.user_delete(user=bob)
    drain_outbox()
    # As after a relay crash between delivery and marking: every event produced a second time.
    assert outbox_requeue(sequences=list(OutboxEvent.objects.values_list("sequence", flat=True))) == 8
    drain_outbox()
    assert outbox_replay(tenant_id=tenant.id, event_types=["UserCreated"]) == 3
    drain_outbox()

    state = tmp_path / "state.json"
    summary = run_kafka_consumer(kafka_bus.bootstrap, settings.KAFKA_TOPIC, state)
    # 8 events (6 of users, the tenant, the definition) + 8 copies + 3 replays
    assert summary["applied"] == 6 + 2 and summary["duplicates"] == 8 and summary["stale"] == 3, summary
    assert summary["invalid"] == 0 and summary["aggregates"] == 5 and summary["live"] == 4, summary

    held = json.loads(state.read_text())["aggregates"]
    assert held[f"user:{alice.id}"]["version"] == alice.version == 3
    assert held[f"user:{alice.id}"]["data"]["display_name"] == "Alice"
    assert held[f"user:{bob.id}"]["deleted"] is True

    # The offsets were saved with the state: a second run resumes after them and sees nothing again.
    again = run_kafka_consumer(kafka_bus.bootstrap, settings.KAFKA_TOPIC, state)
    assert again["applied"] == again["stale"] == again["duplicates"] == 0, again
