"""``manage.py create_tenant SLUG --name NAME``."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.errors import DomainError
from tenants.services import tenant_create


class Command(BaseCommand):
    help = "Create a tenant (event TenantCreated)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--name", required=True)

    def handle(self, *args: object, slug: str, name: str, **options: object) -> None:
        try:
            tenant = tenant_create(slug=slug, name=name)
        except DomainError as error:
            raise CommandError(error.detail) from None
        self.stdout.write(f"created tenant {tenant.slug} ({tenant.id})")
