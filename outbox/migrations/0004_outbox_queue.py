"""The relay's queue: a narrow table of the unpublished events, kept by triggers on the outbox.

Before this, the relay found pending events through partial indexes of the outbox table whose
predicates name ``status``; so marking an event published changed an indexed column and rewrote
every index of a wide row (docs/performance.md, "On Kafka"). Now the pending events are rows of
``outbox_queuedevent``, which statement-level triggers on the outbox table keep true for every writer,
and no index of the outbox covers a column the relay changes but a BRIN, which PostgreSQL 16 keeps in
a HOT update. ``fillfactor = 50`` leaves each new page room for its rows' published versions.

Safe on a big outbox: the backfill copies only the unpublished rows; ``CREATE TRIGGER`` holds writers
off until this migration commits, so no row falls between the backfill and the triggers; the BRIN
index is built in one pass.
"""

import django.contrib.postgres.indexes
import django.db.models.deletion
from django.db import migrations, models

QUEUE = "outbox_queuedevent"
EVENTS = "outbox_outboxevent"
_QUEUED_COLUMNS = "sequence, partition_count, partition, aggregate_id, status, next_attempt_at, created_at"
_FROM_ROWS = f"SELECT {_QUEUED_COLUMNS} FROM changed_rows WHERE status <> 'published'"

TRIGGERS = f"""
CREATE FUNCTION outbox_queue_on_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {QUEUE} ({_QUEUED_COLUMNS}) {_FROM_ROWS};
    RETURN NULL;
END $$;

CREATE FUNCTION outbox_queue_on_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM {QUEUE} q USING changed_rows n WHERE q.sequence = n.sequence AND n.status = 'published';
    INSERT INTO {QUEUE} ({_QUEUED_COLUMNS}) {_FROM_ROWS}
    ON CONFLICT (sequence) DO UPDATE SET
        partition_count = EXCLUDED.partition_count, partition = EXCLUDED.partition,
        aggregate_id = EXCLUDED.aggregate_id, status = EXCLUDED.status,
        next_attempt_at = EXCLUDED.next_attempt_at, created_at = EXCLUDED.created_at;
    RETURN NULL;
END $$;

CREATE FUNCTION outbox_queue_on_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM {QUEUE} q USING changed_rows o WHERE q.sequence = o.sequence;
    RETURN NULL;
END $$;

-- DELETE, not TRUNCATE: a TRUNCATE naming both tables (Django's test flush) has the queue in use.
CREATE FUNCTION outbox_queue_on_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM {QUEUE};
    RETURN NULL;
END $$;

CREATE TRIGGER outbox_queue_insert AFTER INSERT ON {EVENTS}
    REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION outbox_queue_on_insert();
CREATE TRIGGER outbox_queue_update AFTER UPDATE ON {EVENTS}
    REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION outbox_queue_on_update();
CREATE TRIGGER outbox_queue_delete AFTER DELETE ON {EVENTS}
    REFERENCING OLD TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION outbox_queue_on_delete();
CREATE TRIGGER outbox_queue_truncate AFTER TRUNCATE ON {EVENTS}
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_queue_on_truncate();

INSERT INTO {QUEUE} ({_QUEUED_COLUMNS})
    SELECT {_QUEUED_COLUMNS} FROM {EVENTS} WHERE status <> 'published';

ALTER TABLE {EVENTS} SET (fillfactor = 50);
"""

DROP_TRIGGERS = f"""
ALTER TABLE {EVENTS} RESET (fillfactor);
DROP TRIGGER outbox_queue_truncate ON {EVENTS};
DROP TRIGGER outbox_queue_delete ON {EVENTS};
DROP TRIGGER outbox_queue_update ON {EVENTS};
DROP TRIGGER outbox_queue_insert ON {EVENTS};
DROP FUNCTION outbox_queue_on_truncate();
DROP FUNCTION outbox_queue_on_delete();
DROP FUNCTION outbox_queue_on_update();
DROP FUNCTION outbox_queue_on_insert();
"""


class Migration(migrations.Migration):

    dependencies = [
        ("outbox", "0003_outbox_partitions"),
    ]

    operations = [
        migrations.CreateModel(
            name="QueuedEvent",
            fields=[
                (
                    "event",
                    models.OneToOneField(
                        db_column="sequence",
                        db_constraint=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        primary_key=True,
                        related_name="queued",
                        serialize=False,
                        to="outbox.outboxevent",
                    ),
                ),
                ("partition_count", models.SmallIntegerField()),
                ("partition", models.SmallIntegerField()),
                ("aggregate_id", models.UUIDField()),
                (
                    "status",
                    models.CharField(
                        choices=[("pending", "Pending"), ("published", "Published"), ("failed", "Failed (parked)")],
                        max_length=16,
                    ),
                ),
                ("next_attempt_at", models.DateTimeField(null=True)),
                ("created_at", models.DateTimeField()),
            ],
            options={
                "ordering": ["event"],
            },
        ),
        migrations.AddIndex(
            model_name="queuedevent",
            index=models.Index(
                condition=models.Q(("status", "pending")),
                fields=["partition_count", "partition", "event"],
                name="outbox_queue_lane",
            ),
        ),
        migrations.AddIndex(
            model_name="queuedevent",
            index=models.Index(
                condition=models.Q(("status", "failed"), ("next_attempt_at__isnull", False), _connector="OR"),
                fields=["aggregate_id", "event"],
                name="outbox_queue_blocking",
            ),
        ),
        migrations.RunSQL(TRIGGERS, DROP_TRIGGERS),
        migrations.RemoveIndex(model_name="outboxevent", name="outbox_pending_by_sequence"),
        migrations.RemoveIndex(model_name="outboxevent", name="outbox_pending_by_partition"),
        migrations.RemoveIndex(model_name="outboxevent", name="outbox_blocking"),
        migrations.RemoveIndex(model_name="outboxevent", name="outbox_published_at"),
        migrations.AddIndex(
            model_name="outboxevent",
            index=django.contrib.postgres.indexes.BrinIndex(
                autosummarize=True, fields=["published_at"], name="outbox_published_at_brin"
            ),
        ),
    ]
