"""Reads of users (policy subjects)."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from core.errors import NotFound
from tenants.models import Tenant
from users.models import User


def users_of(*, tenant: Tenant) -> QuerySet[User]:
    return User.objects.filter(tenant=tenant)


def user_get(*, tenant: Tenant, user_id: str) -> User:
    try:
        return User.objects.get(tenant=tenant, pk=uuid.UUID(str(user_id)))
    except (ValueError, User.DoesNotExist):
        raise NotFound("no such user in this tenant") from None
