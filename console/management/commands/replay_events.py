"""``manage.py replay_events [--tenant T] [--type UserCreated …] [--since ISO] [--until ISO] [--from-sequence N] [--to-sequence N]``.

Re-publishes past events (still in the outbox) under new ids, marked ``replayof`` in the envelope.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_datetime

from core.errors import NotFound
from outbox.services import outbox_replay
from tenants.selectors import tenant_get


class Command(BaseCommand):
    help = "Queue past events for publishing again under new message ids (to rebuild a consumer)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", default=None, help="Tenant slug or id (deleted tenants included).")
        parser.add_argument("--type", action="append", dest="types", default=[], help="Event type; repeatable.")
        parser.add_argument("--since", default=None, help="ISO 8601 time, inclusive.")
        parser.add_argument("--until", default=None, help="ISO 8601 time, exclusive.")
        parser.add_argument("--from-sequence", type=int, default=None)
        parser.add_argument("--to-sequence", type=int, default=None)
        parser.add_argument("--dry-run", action="store_true", help="Count only.")

    def handle(self, *args: object, **options: Any) -> None:
        tenant_id = None
        if options["tenant"]:
            try:
                tenant_id = tenant_get(ref=str(options["tenant"])).id
            except NotFound:
                raise CommandError(f"no tenant {options['tenant']!r}") from None
        times = {}
        for name in ("since", "until"):
            if options[name]:
                parsed = parse_datetime(str(options[name]))
                if parsed is None or parsed.tzinfo is None:
                    raise CommandError(f"--{name}: an ISO 8601 time with a time zone, e.g. 2026-01-31T00:00:00Z")
                times[name] = parsed
        try:
            count = outbox_replay(
                tenant_id=tenant_id,
                event_types=list(options["types"]) or None,
                from_sequence=options["from_sequence"],
                to_sequence=options["to_sequence"],
                dry_run=bool(options["dry_run"]),
                **times,
            )
        except KeyError as error:
            raise CommandError(str(error)) from None
        verb = "would replay" if options["dry_run"] else "queued for replay"
        self.stdout.write(f"{verb}: {count} events")
