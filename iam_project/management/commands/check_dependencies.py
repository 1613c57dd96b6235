"""``manage.py check_dependencies``: database, migrations, event bus (NATS or Kafka) and broker, as a table.

The exit code says which failed, one bit each: 1 database, 2 migrations, 4 event bus, 8 broker,
16 read replicas (a row only when ``DATABASE_REPLICA_URLS`` is set).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from core.config import redact_url

DATABASE, MIGRATIONS, EVENT_BUS, BROKER, REPLICAS = 1, 2, 4, 8, 16


def check_database() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT version()")
        return cursor.fetchone()[0].split(",")[0]


def check_migrations() -> str:
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if plan:
        raise RuntimeError(
            f"{len(plan)} migrations not applied: {', '.join(f'{m.app_label}.{m.name}' for m, _ in plan[:5])}"
        )
    return "all applied"


def check_event_bus() -> str:
    from eventbus import get_adapter

    get_adapter().ensure_stream()  # NATS: the stream; Kafka: the topic (created if absent)
    where = redact_url(settings.EVENT_BUS.servers[0])
    if settings.EVENT_BUS.kind == "kafka":
        return f"kafka topic {settings.KAFKA_TOPIC} ready at {where}"
    return f"stream {settings.NATS_STREAM_NAME} ready at {where}"


def check_broker() -> str:
    from iam_project.celery import app

    with app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, timeout=3)
        return redact_url(connection.as_uri())


def check_replicas() -> str:
    """Each replica as the web checks it: answers, is a standby, lags at most REPLICA_MAX_LAG_SECONDS."""
    from core.db import replicas

    found = []
    for replica in replicas.replicas():
        replicas.check(replica)
        found.append(f"{replica.alias} {replica.reason} (lag {replica.lag:.1f} s)")
    if not all(replica.healthy for replica in replicas.replicas()):
        raise RuntimeError("; ".join(found))
    return "; ".join(found)


CHECKS: list[tuple[str, int, Callable[[], str]]] = [
    ("database", DATABASE, check_database),
    ("migrations", MIGRATIONS, check_migrations),
    ("event bus", EVENT_BUS, check_event_bus),
    ("broker", BROKER, check_broker),
    *([("replicas", REPLICAS, check_replicas)] if settings.DATABASE_REPLICAS else []),
]


class Command(BaseCommand):
    help = (
        "Check the database, migrations, event bus, broker (and read replicas). "
        "Exit code bits: 1 db, 2 migrations, 4 bus, 8 broker, 16 replicas."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--skip", action="append", default=[], choices=[name for name, _, _ in CHECKS])

    def handle(self, *args: object, skip: list[str], **options: object) -> None:
        failed = 0
        self.stdout.write(f"{'dependency':<12} {'status':<6} {'ms':>7}  detail")
        for name, bit, check in CHECKS:
            if name in skip:
                self.stdout.write(f"{name:<12} {'skip':<6} {'':>7}")
                continue
            if name == "migrations" and failed & DATABASE:
                self.stdout.write(f"{name:<12} {'FAIL':<6} {'':>7}  database unreachable")
                failed |= bit
                continue
            started = time.perf_counter()
            try:
                detail, status = check(), "ok"
            except Exception as exc:  # noqa: BLE001 - every failure is reported in the table
                detail, status = redact_url(f"{type(exc).__name__}: {exc}".splitlines()[0]), "FAIL"
                failed |= bit
            elapsed = (time.perf_counter() - started) * 1000
            self.stdout.write(f"{name:<12} {status:<6} {elapsed:>7.1f}  {detail}")
        if failed:
            raise SystemExit(failed)
