"""``manage.py purge_tenant TENANT [--force]``: remove a deleted tenant for good (event TenantPurged)."""

from django.core.management.base import CommandParser

from tenants.management.lifecycle import LifecycleCommand
from tenants.models import Tenant
from tenants.services import tenant_purge


class Command(LifecycleCommand):
    help = __doc__
    include_deleted = True

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("--force", action="store_true", help="Purge before the retention period is over.")

    def step(self, tenant: Tenant, **options: object) -> str:
        removed = tenant_purge(tenant=tenant, force=bool(options.get("force")))
        return f"purged {tenant.slug} with {removed} users"
