"""Reads of tenants."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from core.errors import NotFound
from tenants.models import Tenant


def tenant_get(*, ref: str, queryset: QuerySet[Tenant] | None = None) -> Tenant:
    """A tenant by id or by slug (slugs are never UUID-shaped, so the two cannot collide)."""
    queryset = Tenant.objects.all() if queryset is None else queryset
    try:
        lookup: dict[str, uuid.UUID | str] = {"pk": uuid.UUID(ref)}
    except ValueError:
        lookup = {"slug": ref}
    try:
        return queryset.get(**lookup)
    except Tenant.DoesNotExist:
        raise NotFound("no such tenant") from None
