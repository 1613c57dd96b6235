"""``manage.py outbox_status``: pending / failed / published counts and the oldest pending age."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandParser

from outbox.models import OutboxEvent
from outbox.selectors import outbox_stats


class Command(BaseCommand):
    help = "Show the outbox: pending, failed (parked) and published counts, oldest pending age."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print one JSON object.")

    def handle(self, *args: object, **options: object) -> None:
        stats = outbox_stats()
        if options["json"]:
            self.stdout.write(json.dumps(stats.as_dict()))
            return
        self.stdout.write(f"pending:     {stats.pending}")
        self.stdout.write(f"failed:      {stats.failed}")
        self.stdout.write(f"published:   {stats.published}")
        self.stdout.write(f"oldest pending age: {stats.oldest_pending_age_seconds:.1f} s")
        for event in OutboxEvent.objects.filter(status=OutboxEvent.Status.FAILED).order_by("sequence")[:20]:
            self.stdout.write(f"  failed #{event.sequence} {event.event_type} {event.event_id}: {event.last_error}")
