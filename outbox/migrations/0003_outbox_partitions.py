"""The relay's partitions: two small columns and the per-lane index of pending rows.

Safe on a big outbox: both columns carry a database default (PostgreSQL 11+ stores it in the
catalogue, no table rewrite; rows written meanwhile by the previous release get lane (1, 0)), and
the index is built ``CONCURRENTLY`` (no lock on writes), so the migration is not atomic.
"""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("outbox", "0002_outbox_blocking_index"),
    ]

    operations = [
        migrations.AddField(
            model_name="outboxevent",
            name="partition",
            field=models.SmallIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name="outboxevent",
            name="partition_count",
            field=models.SmallIntegerField(db_default=1, default=1),
        ),
        AddIndexConcurrently(
            model_name="outboxevent",
            index=models.Index(
                condition=models.Q(("status", "pending")),
                fields=["partition_count", "partition", "sequence"],
                name="outbox_pending_by_partition",
            ),
        ),
    ]
