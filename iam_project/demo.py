"""Demo data for the development stack: one tenant, its attribute schema and a few users."""

from __future__ import annotations

from attributes.services import definition_create
from tenants.models import Tenant
from tenants.services import tenant_create, tenant_update
from users.services import user_create

DEMO_SLUG = "demo"
DEFINITIONS = [
    {"key": "department", "type": "enum", "allowed_values": ["eng", "sales", "finance"], "description": "Department"},
    {"key": "clearance", "type": "integer", "min_value": 0, "max_value": 5, "description": "Clearance level"},
    {"key": "groups", "type": "string_list", "max_items": 20, "description": "Group memberships"},
    {"key": "contractor", "type": "boolean"},
    {"key": "hired", "type": "date", "pii": True},
    {"key": "region", "type": "string", "target": "tenant", "description": "Data residency region"},
]
USERS = [
    ("alice", "Alice Example", {"department": "eng", "clearance": 3, "groups": ["admins", "dev"], "contractor": False}),
    ("bob", "Bob Example", {"department": "sales", "clearance": 1, "groups": ["crm"], "contractor": True}),
    ("carol/ops", "Carol Example", {"department": "finance", "clearance": 4, "hired": "2021-03-01"}),
]


def demo_seed() -> bool:
    """Create the demo tenant unless it exists; returns whether anything was created."""
    if Tenant.objects.filter(slug=DEMO_SLUG).exists():
        return False
    tenant = tenant_create(slug=DEMO_SLUG, name="Demo tenant")
    for definition in DEFINITIONS:
        definition_create(tenant=tenant, **definition)
    tenant_update(tenant=tenant, attributes={"region": "eu-west"})
    for external_id, name, attributes in USERS:
        user_create(
            tenant=tenant,
            external_id=external_id,
            display_name=name,
            email=f"{external_id.split('/')[0]}@demo.example",
            attributes=attributes,
        )
    return True
