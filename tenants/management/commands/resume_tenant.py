"""``manage.py resume_tenant TENANT``: a suspended tenant becomes active again (event TenantUpdated)."""

from tenants.management.lifecycle import command
from tenants.services import tenant_update

Command = command("resume", lambda t, **o: f"resumed {tenant_update(tenant=t, status='active').slug}", help=__doc__)
