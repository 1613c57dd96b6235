"""Reads of attribute definitions."""

from __future__ import annotations

from uuid import UUID

from attributes.models import AttributeDefinition
from iam_project.errors import NotFound


def definitions_for(*, tenant_id: UUID, target: str) -> list[AttributeDefinition]:
    return list(AttributeDefinition.objects.filter(tenant_id=tenant_id, target=target))


def definition_get(*, tenant_id: UUID, key: str) -> AttributeDefinition:
    try:
        return AttributeDefinition.objects.get(tenant_id=tenant_id, key=key)
    except AttributeDefinition.DoesNotExist:
        raise NotFound(f"no attribute definition {key!r} in this tenant") from None
