"""``manage.py revoke_api_key PREFIX``: revoke a key; its next request gets 401."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from access.keys import api_key_revoke
from access.models import ApiKey


class Command(BaseCommand):
    help = "Revoke an API key by its visible prefix."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("prefix")

    def handle(self, *args: object, prefix: str, **options: object) -> None:
        key = ApiKey.objects.filter(prefix=prefix).first()
        if key is None:
            raise CommandError(f"no API key with prefix {prefix!r}")
        api_key_revoke(key=key)
        self.stdout.write(f"revoked {key.name!r} ({prefix})")
