"""The partitioned relay: lanes by aggregate id, a change of ``OUTBOX_PARTITIONS`` on a live outbox, the
fan-out of relay runs and the per-partition figures, against a real NATS server."""

from __future__ import annotations

import io
import json
import logging
import uuid

import pytest
from django.core.management import call_command
from prometheus_client import REGISTRY

from iam_project.exposition import render
from outbox.models import OutboxEvent
from outbox.partitions import Lane, partition_of
from outbox.relay import OutboxWorker
from outbox.tasks import relay_outbox_task
from tests.buses import Bus, per_aggregate
from tests.factories import DefinitionFactory, TenantFactory, UserFactory
from tests.outbox_helpers import drain_outbox, lane_held
from users import services as user_services

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.nats]


def test_an_aggregate_keeps_its_partition_in_every_process_and_release() -> None:
    aggregate = uuid.UUID("6f1c1a4e-0b5d-4c1e-9d7e-3f2a5b8c9d01")
    # crc32 of the id's bytes: a fixed value, not Python's per-process hash().
    assert [partition_of(aggregate, n) for n in (1, 2, 8, 256)] == [0, 0, 2, 66]  # crc32 = 3121709122
    assert Lane(1, 0).lock_key == 0x1A4_0B0C  # the single relay's key of old: old and new exclude each other
    assert len({Lane(n, p).lock_key for n in (1, 8, 256) for p in range(n)}) == 1 + 8 + 256


def test_changing_the_partition_count_with_events_pending_keeps_each_aggregates_order(
    event_bus, settings, caplog
) -> None:  # type: ignore[no-untyped-def]
    """Rows written under 1 partition are still pending when the setting becomes 8 and the same users
    change again: the relay relays both layouts, each event after the earlier ones of its aggregate."""
    settings.OUTBOX_PARTITIONS = 1
    tenant = TenantFactory(slug="acme")
    DefinitionFactory(tenant=tenant, key="level", type="integer")
    users = [UserFactory(tenant=tenant, external_id=f"u{i}") for i in range(6)]
    settings.OUTBOX_PARTITIONS = 8
    for level in (1, 2):
        for user in users:
            user.refresh_from_db()
            user_services.user_update(user=user, attributes={"level": level})
    layouts = set(OutboxEvent.objects.values_list("partition_count", flat=True))
    assert layouts == {1, 8}

    with caplog.at_level(logging.WARNING, logger="iam.OutboxWorker"):
        result = drain_outbox()
    assert result.other_layouts == [1]
    assert "written with OUTBOX_PARTITIONS=1 (now 8)" in caplog.text
    assert not OutboxEvent.objects.filter(status="pending").exists()
    stored = Bus("nats", event_bus, settings).messages()
    assert len(stored) == OutboxEvent.objects.count() == 2 + 6 * 3
    versions = per_aggregate(stored)
    assert all(versions[str(user.id)] == [1, 2, 3] for user in users)

    # Drained: the next run sees one layout again and says nothing about it.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="iam.OutboxWorker"):
        assert OutboxWorker().run().other_layouts == []
    assert "OUTBOX_PARTITIONS" not in caplog.text


def test_an_old_layouts_event_holds_back_the_later_events_of_its_aggregate(event_bus, settings) -> None:  # type: ignore[no-untyped-def]
    """Another relay holds the old layout's lane: this run relays the new layout's lanes, where the
    user's update waits while the user's creation is pending in the old lane; other aggregates go on."""
    settings.OUTBOX_PARTITIONS = 1
    tenant = TenantFactory(slug="acme")
    drain_outbox()
    early = UserFactory(tenant=tenant, external_id="early")  # pending in lane (1, 0)
    settings.OUTBOX_PARTITIONS = 8
    user_services.user_update(user=early, email="later@example.com")
    other = UserFactory(tenant=tenant, external_id="other")

    with lane_held(Lane(1, 0)):
        result = OutboxWorker().run()
    assert result.busy and result.busy_partitions == 1 and result.partitions == 8
    assert result.published == 1  # the other user; the early user's update waits
    assert OutboxEvent.objects.get(aggregate_id=early.id, event_type="UserUpdated").status == "pending"
    assert OutboxEvent.objects.get(aggregate_id=other.id).status == "published"

    drain_outbox()
    assert per_aggregate(Bus("nats", event_bus, settings).messages())[str(early.id)] == [1, 2]


def test_a_poke_asks_for_one_run_per_idle_partition_with_work_up_to_the_concurrency(event_bus, settings, pokes) -> None:  # type: ignore[no-untyped-def]
    settings.OUTBOX_PARTITIONS = 8
    settings.OUTBOX_RELAY_CONCURRENCY = 3
    tenant = TenantFactory(slug="acme")
    for i in range(12):
        UserFactory(tenant=tenant, external_id=f"u{i}")
    busy_lanes = len(set(OutboxEvent.objects.values_list("partition", flat=True)))
    assert busy_lanes >= 3  # 13 aggregates over 8 partitions
    pokes.sent.clear()

    result = relay_outbox_task()
    assert [sent["kwargs"] for sent in pokes.sent] == [{"fan_out": False}] * 2  # 3 runs in all
    assert result["published"] == 13 and result["partitions"] == 8
    pokes.sent.clear()
    assert relay_outbox_task()["published"] == 0 and pokes.sent == []  # nothing pending: no more runs
    relay_outbox_task(fan_out=False)
    assert pokes.sent == []

    settings.OUTBOX_PARTITIONS = 1
    UserFactory(tenant=tenant, external_id="one-lane")
    pokes.sent.clear()
    relay_outbox_task()
    assert pokes.sent == []  # one partition: one run, as before partitions


def test_metrics_show_each_partitions_backlog_and_runs_by_outcome(event_bus, settings) -> None:  # type: ignore[no-untyped-def]
    settings.OUTBOX_PARTITIONS = 4
    tenant = TenantFactory(slug="acme")
    users = [UserFactory(tenant=tenant, external_id=f"u{i}") for i in range(8)]
    expected = {str(p): 0 for p in range(4)}
    for aggregate in [tenant.id, *(user.id for user in users)]:
        expected[str(partition_of(aggregate, 4))] += 1
    text = render().decode()
    for partition, pending in expected.items():
        assert f'outbox_partition_pending_events{{partition="{partition}"}} {float(pending)}' in text
        assert f'outbox_partition_oldest_pending_age_seconds{{partition="{partition}"}}' in text
    assert "outbox_pending_count 9.0" in text  # the runbook's total, unchanged

    published_before = REGISTRY.get_sample_value("outbox_relay_runs_total", {"outcome": "published"}) or 0.0
    idle_before = REGISTRY.get_sample_value("outbox_relay_runs_total", {"outcome": "idle"}) or 0.0
    drain_outbox()
    drain_outbox()
    assert REGISTRY.get_sample_value("outbox_relay_runs_total", {"outcome": "published"}) == published_before + 1
    assert REGISTRY.get_sample_value("outbox_relay_runs_total", {"outcome": "idle"}) == idle_before + 1
    assert 'outbox_partition_pending_events{partition="0"} 0.0' in render().decode()


def test_outbox_status_lists_the_partitions_holding_pending_events(settings) -> None:  # type: ignore[no-untyped-def]
    settings.OUTBOX_PARTITIONS = 4
    tenant = TenantFactory(slug="acme")
    out = io.StringIO()
    call_command("outbox_status", stdout=out)
    partition = partition_of(tenant.id, 4)
    assert f"  partition {partition}: 1 pending, oldest " in out.getvalue()
    assert out.getvalue().count("  partition ") == 1  # the empty ones are left out

    out = io.StringIO()
    call_command("outbox_status", "--json", stdout=out)
    figures = json.loads(out.getvalue())
    assert figures["pending"] == 1 and list(figures["pending_by_partition"]) == [str(partition)]
