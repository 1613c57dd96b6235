"""Migrations that move state only: the database must not change."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.db import connection

from imports.models import ImportJob
from tests.factories import TenantFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("app", "migration"), [("imports", "0001"), ("users", "0003")])
def test_moving_import_job_to_the_imports_app_runs_no_schema_sql(app, migration) -> None:  # type: ignore[no-untyped-def]
    out = io.StringIO()
    call_command("sqlmigrate", app, migration, stdout=out)
    statements = [line for line in out.getvalue().splitlines() if line.strip() and not line.startswith("--")]
    assert not [s for s in statements if s.split()[0].upper() in ("CREATE", "ALTER", "DROP")], statements


def test_import_jobs_stay_in_their_table() -> None:
    assert ImportJob._meta.db_table == "users_importjob" and ImportJob._meta.app_label == "imports"
    job = ImportJob.objects.create(tenant=TenantFactory(), content=b"{}", format="jsonl")
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM users_importjob WHERE id = %s", [job.pk])
        assert cursor.fetchone() == (1,)


@pytest.mark.django_db(transaction=True)  # sqlmigrate of a non-atomic migration: outside the test's transaction
def test_the_relay_partitions_migration_rewrites_no_table_and_locks_no_writes() -> None:
    """outbox 0003 on a big outbox: columns with a database default (metadata only on PostgreSQL 11+,
    and rows of the previous release get one), the index built CONCURRENTLY."""
    out = io.StringIO()
    call_command("sqlmigrate", "outbox", "0003", stdout=out)
    sql = out.getvalue()
    assert 'ADD COLUMN "partition" smallint DEFAULT 0 NOT NULL' in sql
    assert 'ADD COLUMN "partition_count" smallint DEFAULT 1 NOT NULL' in sql
    assert "DROP DEFAULT" not in sql and "CHECK" not in sql  # no default dropped, no constraint to validate
    assert 'CREATE INDEX CONCURRENTLY "outbox_pending_by_partition"' in sql


@pytest.mark.django_db(transaction=True)
def test_the_queue_migration_backfills_the_unpublished_rows_of_the_previous_release() -> None:
    """outbox 0004 on an outbox the previous release wrote: its pending and parked rows are queued (the
    published ones not), the triggers take over from there, and the migration reverses."""
    from django.db.migrations.executor import MigrationExecutor

    from outbox.models import OutboxEvent, QueuedEvent

    TenantFactory(slug="acme")  # one event, written by this release
    executor = MigrationExecutor(connection)
    executor.migrate([("outbox", "0003_outbox_partitions")])
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('outbox_queuedevent')")
        assert cursor.fetchone() == (None,)
        columns = ", ".join(
            f.column for f in OutboxEvent._meta.concrete_fields if f.column not in ("sequence", "event_id", "status")
        )
        for status in ("pending", "failed", "published"):  # as the previous release writes them
            cursor.execute(
                f"INSERT INTO outbox_outboxevent (event_id, status, {columns}) "
                f"SELECT gen_random_uuid(), %s, {columns} FROM outbox_outboxevent ORDER BY sequence LIMIT 1",
                [status],
            )
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
    queued = dict(QueuedEvent.objects.values_list("event_id", "status"))
    unpublished = dict(OutboxEvent.objects.exclude(status="published").values_list("sequence", "status"))
    assert queued == unpublished and sorted(queued.values()) == ["failed", "pending", "pending"]
    OutboxEvent.objects.filter(status="pending").update(status="published")
    assert list(QueuedEvent.objects.values_list("status", flat=True)) == ["failed"]
