"""``manage.py export_tenant --tenant SLUG [--format jsonl|csv] [--output FILE] [--release-of PREFIX]``.

Streams the users; imports back unchanged. An operator's export is whole (PII included: it is the
backup and migration format, and the operator already holds the database). ``--release-of`` cuts it
to what an API key's release policy lets out (access/release.py), for handing the file to that key's
owner; the key must reach the tenant.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from access.models import ApiKey
from access.principals import key_release
from access.release import FULL
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
        parser.add_argument("--release-of", default="", help="An API key's prefix: only what its policy releases.")

    def handle(
        self, *args: object, tenant: str, format: str, output: str, release_of: str = "", **options: object
    ) -> None:
        try:
            found = tenant_get(ref=tenant, queryset=Tenant.objects.filter(deleted_at__isnull=True))
        except NotFound:
            raise CommandError(f"no tenant {tenant!r}") from None
        release = FULL
        if release_of:
            key = ApiKey.objects.filter(prefix=release_of).first()
            if key is None or not key.active or not (key.all_tenants or found.id in key.tenant_ids):
                raise CommandError(f"no active API key {release_of!r} reaching {found.slug}")
            release = key_release(key.scopes, key.attributes)
        if output == "-":
            count = users_export(tenant=found, fmt=format, out=self.stdout._out, release=release)  # type: ignore[arg-type]  # OutputWrapper's wrapped stream; django-stubs omit _out
        else:
            with open(output, "w", newline="", encoding="utf-8") as handle:
                count = users_export(tenant=found, fmt=format, out=handle, release=release)
        self.stderr.write(f"exported {count} users of {found.slug}")
