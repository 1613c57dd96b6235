"""``manage.py purge_audit [--older-than-days N]``: delete audit records past retention."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser

from audit.services import audit_purge


class Command(BaseCommand):
    help = "Delete audit records older than AUDIT_RETENTION_DAYS (or --older-than-days)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than-days", type=int, default=None)

    def handle(self, *args: object, older_than_days: int | None, **options: object) -> None:
        deleted = audit_purge(older_than_days=older_than_days)
        self.stdout.write(f"deleted {deleted} audit records")
