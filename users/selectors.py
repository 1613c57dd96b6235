"""Reads of users (policy subjects)."""

from __future__ import annotations

from django.db.models import QuerySet

from core.db.lookups import get_by_id
from tenants.models import Tenant
from users.models import User


def users_of(*, tenant: Tenant) -> QuerySet[User]:
    return User.objects.filter(tenant=tenant)


def user_get(*, tenant: Tenant, user_id: str) -> User:
    return get_by_id(users_of(tenant=tenant), user_id, "no such user in this tenant")
