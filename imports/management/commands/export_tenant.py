"""``manage.py export_tenant --tenant SLUG [--format jsonl|csv] [--output FILE]``: streams users; imports back unchanged."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.errors import NotFound
from imports.transfer import users_export
from tenants.models import Tenant
from tenants.selectors import tenant_get


class Command(BaseCommand):
    help = "Export a tenant's users as JSON Lines or CSV (the import format)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", required=True)
        parser.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
        parser.add_argument("--output", default="-", help="File path, or - for standard output.")

    def handle(self, *args: object, tenant: str, format: str, output: str, **options: object) -> None:
        try:
            found = tenant_get(ref=tenant, queryset=Tenant.objects.filter(deleted_at__isnull=True))
        except NotFound:
            raise CommandError(f"no tenant {tenant!r}") from None
        if output == "-":
            count = users_export(tenant=found, fmt=format, out=self.stdout._out)  # type: ignore[arg-type]  # OutputWrapper's wrapped stream; django-stubs omit _out
        else:
            with open(output, "w", newline="", encoding="utf-8") as handle:
                count = users_export(tenant=found, fmt=format, out=handle)
        self.stderr.write(f"exported {count} users of {found.slug}")
