"""``/metrics`` for web (our own view) and the worker's metrics server on ``WORKER_METRICS_PORT``.

In prometheus multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``: gunicorn workers, Celery's prefork
children) the counters of every process are merged by ``MultiProcessCollector``; django-prometheus'
own export view would drop our collectors there. The outbox gauges are read from the table at
scrape time, so they are right whichever process serves the scrape.

The relay's figures (``event_bus_errors_total``, ``outbox_relay_*``) are counted in the worker and
served only by the worker's exposition: web's /metrics leaves them out rather than export a 0 that
never moves (which would also hide ``absent(outbox_relay_last_success_timestamp_seconds)`` when no
worker is scraped).

``outbox_pending_count`` and ``outbox_failed_count`` are exported untyped: the runbook fixes the name, and Prometheus' naming
lint reserves the ``_count`` suffix for histograms and summaries (docs/adr/0003-metric-names.md).
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Iterator

from django.conf import settings
from django.db import DatabaseError, close_old_connections
from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric, UnknownMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

logger = logging.getLogger(__name__)


class OutboxCollector:
    """The outbox figures, read from PostgreSQL at scrape time."""

    def collect(self) -> Iterator[Metric]:
        from outbox.selectors import outbox_backlog_by_partition, outbox_stats

        try:
            stats = outbox_stats()
            backlog = outbox_backlog_by_partition()
        except DatabaseError as exc:
            logger.warning("outbox figures unavailable for /metrics", extra={"error": str(exc)})
            return
        yield UnknownMetricFamily("outbox_pending_count", "Outbox events waiting to be published.", value=stats.pending)
        yield GaugeMetricFamily(
            "outbox_oldest_pending_age_seconds",
            "Age of the oldest outbox event waiting to be published (0 when none).",
            value=stats.oldest_pending_age_seconds,
        )
        pending = GaugeMetricFamily(
            "outbox_partition_pending_events",
            'Outbox events waiting to be published, per relay partition ("3/8": a lane of an earlier OUTBOX_PARTITIONS).',
            labels=["partition"],
        )
        age = GaugeMetricFamily(
            "outbox_partition_oldest_pending_age_seconds",
            "Age of the oldest outbox event waiting in each relay partition (0 when none).",
            labels=["partition"],
        )
        for lane in backlog:
            pending.add_metric([lane.partition], lane.pending)
            age.add_metric([lane.partition], lane.oldest_pending_age_seconds)
        yield pending
        yield age
        yield UnknownMetricFamily(
            "outbox_failed_count", "Outbox events parked as failed after their attempts.", value=stats.failed
        )


# Family names as prometheus_client reports them (a counter's family name has no ``_total``).
WORKER_ONLY_FAMILIES = frozenset(
    {
        "event_bus_errors",
        "outbox_relay_published",
        "outbox_relay_runs",
        "outbox_relay_last_success_timestamp_seconds",
    }
)


class _Without:
    """The families of ``registry`` except ``names``."""

    def __init__(self, registry: CollectorRegistry, names: frozenset[str]) -> None:
        self.registry, self.names = registry, names

    def collect(self) -> list[Metric]:
        return [family for family in self.registry.collect() if family.name not in self.names]


def process_registry() -> CollectorRegistry:
    """Every process's metrics: merged from the multiprocess directory, or this process's own."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return registry
    return REGISTRY


def render(include_outbox: bool = True, include_worker_figures: bool = True) -> bytes:
    registry = process_registry()
    if not include_worker_figures:
        filtered = CollectorRegistry(auto_describe=False)
        filtered.register(_Without(registry, WORKER_ONLY_FAMILIES))
        registry = filtered
    output = generate_latest(registry)
    if include_outbox:
        outbox = CollectorRegistry(auto_describe=False)
        outbox.register(OutboxCollector())
        output += generate_latest(outbox)
    return output


def _allowed(request: HttpRequest) -> bool:
    networks = getattr(settings, "METRICS_ALLOWED_NETWORKS", [])
    if not networks:
        return True
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(network, strict=False) for network in networks)


def metrics_view(request: HttpRequest) -> HttpResponse:
    if not _allowed(request):
        return HttpResponse("metrics are not served to this address\n", status=403, content_type="text/plain")
    try:
        return HttpResponse(render(include_worker_figures=False), content_type=CONTENT_TYPE_LATEST)
    finally:
        close_old_connections()
