"""Demo data for the development stack: one tenant, its attribute schema and a few users."""

from __future__ import annotations

import random
from typing import Any

from attributes.services import definition_create
from tenants.models import Tenant
from tenants.services import tenant_create, tenant_update
from users.services import user_create

DEMO_SLUG = "demo"
DEFINITIONS: list[dict[str, Any]] = [
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


# --- generated data for load tests and benchmarks ------------------------------------------------
GENERATED_TYPES: list[dict[str, Any]] = [
    {"type": "enum", "allowed_values": ["eng", "sales", "finance", "ops", "legal"]},
    {"type": "integer", "min_value": 0, "max_value": 10},
    {"type": "string", "max_length": 64},
    {"type": "boolean"},
    {"type": "string_list", "max_items": 10},
    {"type": "date"},
    {"type": "number"},
    {"type": "datetime"},
]


def generated_definitions(count: int) -> list[dict]:
    return [{"key": f"attr_{index:02d}", **GENERATED_TYPES[index % len(GENERATED_TYPES)]} for index in range(count)]


def generated_value(definition: dict[str, Any], rng: random.Random) -> object:
    kind = definition["type"]
    if kind == "enum":
        return rng.choice(definition["allowed_values"])
    if kind == "integer":
        return rng.randint(0, 10)
    if kind == "string":
        return f"value-{rng.randint(0, 10**6)}"
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "string_list":
        return [f"group-{rng.randint(0, 50)}" for _ in range(rng.randint(0, 4))]
    if kind == "date":
        return f"20{rng.randint(10, 25)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    if kind == "number":
        return round(rng.random() * 1000, 3)
    return f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:00:00Z"
