"""The relay against a three-node NATS JetStream cluster that loses its stream leader, then a follower.

Two relay workers (threads, each with its own adapter and database connection) publish 10,000 events
of 200 aggregates over 8 partitions to an R3 stream; ``EVENT_BUS_URL`` lists the three nodes. The
test kills the stream's leader (the cluster elects another and the relay goes on), then a follower
(one node left: no quorum, the relay counts transport errors and waits), then restarts both: every
event arrives, the stream holds each id once (its duplicate window and ``Nats-Msg-Id``), and each
aggregate's versions are in order.
"""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import transaction
from prometheus_client import REGISTRY

import eventbus
from core.config import event_bus_config
from devtools.harness.children import wait_until
from eventbus.jetstream import NatsJetStreamAdapter
from outbox import services as outbox_services
from outbox.events import AggregateEvent
from outbox.models import OutboxEvent
from outbox.relay import OutboxWorker
from tests.nats_cluster import NatsCluster, read_stream

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.nats]

EVENTS, AGGREGATES = 10_000, 200


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    cluster = NatsCluster(tmp_path / "cluster")
    try:
        yield cluster.start()
    finally:
        cluster.stop()


def new_adapter() -> NatsJetStreamAdapter:
    """An adapter of the worker's own, built from settings as ``eventbus.get_adapter`` builds it."""
    adapter = eventbus.new_adapter()
    assert isinstance(adapter, NatsJetStreamAdapter)
    return adapter


class Writer:
    """Writes the events: round after round, one more version of every aggregate."""

    def __init__(self) -> None:
        self.tenant = uuid.uuid4()
        self.aggregates = [uuid.uuid4() for _ in range(AGGREGATES)]
        self.version = 0

    def write(self, events: int) -> None:
        for _ in range(events // AGGREGATES):
            self.version += 1
            rows = [
                outbox_services.event_build(
                    AggregateEvent("UserUpdated", self.tenant, aggregate, self.version, {"version": self.version})
                )
                for aggregate in self.aggregates
            ]
            with transaction.atomic():
                outbox_services.events_record(rows)


def transport_errors() -> float:
    return REGISTRY.get_sample_value("event_bus_errors_total", {"kind": "transport"}) or 0.0


def published() -> int:
    return OutboxEvent.objects.filter(status="published").count()


def test_the_relay_loses_nothing_when_the_stream_leader_and_then_a_follower_die(
    nats_cluster: NatsCluster, settings
) -> None:  # type: ignore[no-untyped-def]
    settings.EVENT_BUS = event_bus_config(nats_cluster.url)  # nats://a,nats://b,nats://c
    settings.NATS_STREAM_NAME = "CLUSTER_EVENTS"
    settings.NATS_SUBJECT_PREFIX = "cluster"
    settings.NATS_STREAM_REPLICAS = 3
    settings.NATS_PUBLISH_TIMEOUT_SECONDS = 1.0
    settings.NATS_CONNECT_TIMEOUT_SECONDS = 1.0
    settings.OUTBOX_PARTITIONS = 8
    eventbus.reset_adapter()
    assert len(settings.EVENT_BUS.servers) == 3
    creator = new_adapter()
    wait_until(lambda: creator.ensure_stream() is None, timeout=30, message="the R3 stream (a JetStream meta leader)")
    creator.close()
    writer = Writer()
    writer.write(EVENTS // 2)

    stop = threading.Event()
    failures: list[BaseException] = []

    def relay_worker() -> None:
        from django.db import connection

        adapter = new_adapter()
        worker = OutboxWorker(adapter=adapter)
        try:
            while not stop.is_set():
                result = worker.run()
                if result.transport_error or not result.published:
                    time.sleep(0.1)
        except BaseException as error:
            failures.append(error)
        finally:
            adapter.close()
            connection.close()

    workers = [threading.Thread(target=relay_worker, name=f"relay-{i}") for i in range(2)]
    for thread in workers:
        thread.start()
    killed = []
    try:
        wait_until(lambda: published() >= 1000, timeout=30, message="1,000 events published")
        leader, _ = nats_cluster.stream_leader(settings.NATS_STREAM_NAME)
        nats_cluster.node(leader).proc.stop(sig=signal.SIGKILL)  # type: ignore[union-attr]
        killed.append(nats_cluster.node(leader))
        before = published()
        wait_until(
            lambda: published() >= min(before + 1000, EVENTS // 2), timeout=30, message="progress under a new leader"
        )

        new_leader, _ = wait_until(
            lambda: nats_cluster.stream_leader(settings.NATS_STREAM_NAME), timeout=20, message="a new leader"
        )
        follower = next(n for n in nats_cluster.nodes if n.process is not None and n.server_name != new_leader)
        errors_before = transport_errors()
        follower.proc.stop(sig=signal.SIGKILL)  # type: ignore[union-attr]
        killed.append(follower)
        writer.write(EVENTS // 2)  # written during the outage: one node of three, no quorum
        wait_until(lambda: transport_errors() > errors_before, timeout=30, message="the outage counted")
        outage_errors = transport_errors() - errors_before
        assert published() < EVENTS

        for node in killed:
            node.start()
        wait_until(lambda: published() == EVENTS, timeout=60, message="every event published after the restart")
    finally:
        stop.set()
        for thread in workers:
            thread.join(30)
    assert not failures, failures
    assert outage_errors > 0

    stored = read_stream(nats_cluster, settings.NATS_STREAM_NAME)
    ids = [msg_id for msg_id, _ in stored]
    outbox_ids = {str(event_id) for event_id in OutboxEvent.objects.values_list("event_id", flat=True)}
    assert len(outbox_ids) == EVENTS
    assert len(ids) == len(set(ids)) == EVENTS and set(ids) == outbox_ids  # each once, none lost
    versions: dict[str, list[int]] = {}
    for _, envelope in stored:
        versions.setdefault(envelope["aggregateid"], []).append(envelope["aggregateversion"])
    expected = list(range(1, writer.version + 1))
    assert all(versions[str(aggregate)] == expected for aggregate in writer.aggregates)
