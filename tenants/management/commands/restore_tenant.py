"""``manage.py restore_tenant TENANT``: undo a soft delete (event TenantRestored)."""

from tenants.management.lifecycle import command
from tenants.services import tenant_restore

Command = command(
    "restore", lambda t, **o: f"restored {tenant_restore(tenant=t).slug}", include_deleted=True, help=__doc__
)
