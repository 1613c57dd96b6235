"""``manage.py delete_tenant TENANT``: soft delete, restorable until purged (event TenantDeleted)."""

from tenants.management.lifecycle import command
from tenants.services import tenant_delete

Command = command("delete", lambda t, **o: f"deleted {tenant_delete(tenant=t).slug} (restorable)", help=__doc__)
