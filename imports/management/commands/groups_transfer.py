"""``manage.py groups_transfer export|import --tenant SLUG [--file PATH]``: a tenant's groups and memberships as JSON Lines."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from access.principals import Principal
from core.actors import acting_as
from core.errors import DomainError, NotFound
from imports.groups_transfer import groups_export, groups_import
from imports.transfer import FileFormatError
from tenants.models import Tenant
from tenants.selectors import tenant_get


class Command(BaseCommand):
    help = "Export or import a tenant's groups and memberships (JSON Lines; an import is all or nothing)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("direction", choices=["export", "import"])
        parser.add_argument("--tenant", required=True)
        parser.add_argument("--file", default="-", help="A path; for an export, - is standard output.")

    def handle(self, *args: object, direction: str, tenant: str, file: str, **options: object) -> None:
        try:
            found = tenant_get(ref=tenant, queryset=Tenant.objects.filter(deleted_at__isnull=True))
        except NotFound:
            raise CommandError(f"no tenant {tenant!r}") from None
        if direction == "export":
            if file == "-":
                count = groups_export(tenant=found, out=self.stdout)  # whole lines: OutputWrapper adds no newline
            else:
                with open(file, "w", encoding="utf-8") as handle:
                    count = groups_export(tenant=found, out=handle)
            self.stderr.write(f"exported {count} groups of {found.slug}")
            return
        try:
            with (
                open(file, "rb") as stream,
                acting_as(Principal("system", f"groups_transfer:{Path(file).name}", frozenset(), None)),
            ):
                report = groups_import(tenant=found, stream=stream)
        except OSError as exc:
            raise CommandError(f"{file}: {exc.strerror}") from None
        except (FileFormatError, DomainError) as exc:
            raise CommandError(f"nothing imported: {exc}") from None
        self.stdout.write(", ".join(f"{name} {value}" for name, value in asdict(report).items()))
