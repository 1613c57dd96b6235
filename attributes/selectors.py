"""Reads of attribute definitions."""

from __future__ import annotations

from uuid import UUID

from django.db.models import Exists, OuterRef

from attributes.models import TARGETS_OF_SUBJECT, AttributeDefinition, SearchIndex
from core.errors import NotFound


def definitions_for(*, tenant_id: UUID, target: str) -> list[AttributeDefinition]:
    """The definitions a subject of kind ``target`` (user, group, tenant) holds values of, each with
    ``search_ready``: whether its search index is built (the search compiles for it only then)."""
    ready = SearchIndex.objects.filter(definition=OuterRef("pk"), state=SearchIndex.State.READY)
    return list(
        AttributeDefinition.objects.filter(tenant_id=tenant_id, target__in=TARGETS_OF_SUBJECT[target]).annotate(
            search_ready=Exists(ready)
        )
    )


def definition_get(*, tenant_id: UUID, key: str) -> AttributeDefinition:
    try:
        return AttributeDefinition.objects.get(tenant_id=tenant_id, key=key)
    except AttributeDefinition.DoesNotExist:
        raise NotFound(f"no attribute definition {key!r} in this tenant") from None


def pii_keys(tenant_id: UUID) -> set[str]:
    """The tenant's attribute keys flagged as PII."""
    return set(AttributeDefinition.objects.filter(tenant_id=tenant_id, pii=True).values_list("key", flat=True))
