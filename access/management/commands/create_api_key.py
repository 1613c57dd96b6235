"""``manage.py create_api_key --name NAME --scopes a,b [--tenants slug,…] [--expires-days N]``.

Prints the key once; only its hash is stored.
"""

from __future__ import annotations

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from access import scopes as S
from access.keys import api_key_create
from iam_project.errors import ValidationFailed
from tenants.models import Tenant


class Command(BaseCommand):
    help = f"Create a service-account API key and print it once. Scopes: {', '.join(S.SCOPES)}."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True)
        parser.add_argument("--scopes", required=True, help="Comma-separated, e.g. pip:read,directory:read")
        parser.add_argument("--tenants", default="", help="Comma-separated tenant slugs; empty for every tenant.")
        parser.add_argument("--expires-days", type=int, default=None)

    def handle(
        self, *args: object, name: str, scopes: str, tenants: str, expires_days: int | None, **options: object
    ) -> None:
        slugs = [slug.strip() for slug in tenants.split(",") if slug.strip()]
        found = list(Tenant.objects.filter(slug__in=slugs))
        missing = sorted(set(slugs) - {tenant.slug for tenant in found})
        if missing:
            raise CommandError(f"unknown tenants: {', '.join(missing)}")
        expires_at = timezone.now() + timedelta(days=expires_days) if expires_days else None
        try:
            key, raw = api_key_create(
                name=name,
                scopes=[scope.strip() for scope in scopes.split(",") if scope.strip()],
                tenants=found,
                expires_at=expires_at,
                created_by="command:create_api_key",
            )
        except ValidationFailed as error:
            raise CommandError(error.detail) from None
        self.stderr.write(f"Created API key {key.name!r} (prefix {key.prefix}). It is shown once:")
        self.stdout.write(raw)
