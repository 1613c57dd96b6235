"""``manage.py outbox_status``: pending / failed / published counts, the oldest pending age, the pending
events per relay partition."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandParser

from outbox.models import OutboxEvent
from outbox.selectors import outbox_backlog_by_partition, outbox_stats


class Command(BaseCommand):
    help = "Show the outbox: pending, failed (parked) and published counts, oldest pending age."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print one JSON object.")

    def handle(self, *args: object, **options: object) -> None:
        stats = outbox_stats()
        backlog = [lane for lane in outbox_backlog_by_partition() if lane.pending]
        if options["json"]:
            partitions = {lane.partition: [lane.pending, round(lane.oldest_pending_age_seconds, 1)] for lane in backlog}
            self.stdout.write(json.dumps({**stats.as_dict(), "pending_by_partition": partitions}))
            return
        self.stdout.write(f"pending:     {stats.pending}")
        self.stdout.write(f"failed:      {stats.failed}")
        self.stdout.write(f"published:   {stats.published}")
        self.stdout.write(f"oldest pending age: {stats.oldest_pending_age_seconds:.1f} s")
        for lane in backlog:  # "3/8": a partition of an earlier OUTBOX_PARTITIONS (docs/runbook.md)
            self.stdout.write(
                f"  partition {lane.partition}: {lane.pending} pending, oldest {lane.oldest_pending_age_seconds:.1f} s"
            )
        for event in OutboxEvent.objects.filter(status=OutboxEvent.Status.FAILED).order_by("sequence")[:20]:
            self.stdout.write(f"  failed #{event.sequence} {event.event_type} {event.event_id}: {event.last_error}")
