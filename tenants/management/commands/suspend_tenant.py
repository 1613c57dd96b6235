"""``manage.py suspend_tenant TENANT``: the PIP reports the tenant as suspended (event TenantUpdated)."""

from tenants.management.lifecycle import command
from tenants.services import tenant_suspend

Command = command("suspend", lambda t, **o: f"suspended {tenant_suspend(tenant=t).slug}", help=__doc__)
