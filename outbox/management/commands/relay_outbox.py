"""``manage.py relay_outbox [--once]``: the relay without Celery (the same code as the beat task)."""

from __future__ import annotations

import json
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from outbox.relay import OutboxWorker


class Command(BaseCommand):
    help = "Relay pending outbox events to the event bus (once, or in a loop every OUTBOX_RELAY_INTERVAL)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="One relay run, then exit.")
        parser.add_argument("--interval", type=float, default=None, help="Seconds between runs in loop mode.")

    def handle(self, *args: object, once: bool, interval: float | None, **options: object) -> None:
        worker = OutboxWorker()
        pause = settings.OUTBOX_RELAY_INTERVAL if interval is None else interval
        while True:
            result = worker.run()
            self.stdout.write(json.dumps(result.as_dict()))
            if once:
                if result.transport_error:
                    raise SystemExit(1)
                return
            time.sleep(pause)
