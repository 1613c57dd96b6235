"""Who is calling: one :class:`Principal` for console users and API keys alike.

Every API view derives what it may see from ``principal_of(request)``: the scopes it holds and the
tenants it reaches (``None`` = every tenant). Superusers hold every scope on every tenant; tenant
administrators hold the directory and schema scopes on their tenants; keys hold what they were
given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from django.db.models import QuerySet

from access import scopes as S
from access.release import FULL, Release, release_of
from tenants.models import Tenant

CONSOLE_ADMIN_SCOPES = frozenset({S.PIP_READ, S.PII_READ, S.DIRECTORY_READ, S.DIRECTORY_WRITE, S.SCHEMA_WRITE})


@dataclass(frozen=True)
class Principal:
    kind: str  # "console" (session) | "basic" (a console user over HTTP Basic) | "key" | "system"
    name: str
    scopes: frozenset[str]
    tenant_ids: frozenset[UUID] | None  # None: every tenant
    id: str = ""
    release: Release = FULL  # which attribute values it may read (access/release.py)

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.name}"

    def has(self, scope: str) -> bool:
        return scope in self.scopes

    def reaches(self, tenant_id: UUID | None) -> bool:
        """Whether this principal may see the tenant; never for ``None`` (not a tenant id)."""
        return self.tenant_ids is None or tenant_id in self.tenant_ids

    def tenants(self) -> QuerySet[Tenant]:
        """The live tenants this principal reaches (soft-deleted tenants are gone for every principal)."""
        live = Tenant.objects.filter(deleted_at__isnull=True)
        if self.tenant_ids is None:
            return live
        return live.filter(pk__in=self.tenant_ids)


class KeyUser:
    """``request.user`` for a request authenticated with an API key."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False

    def __init__(self, key: Any, principal: Principal) -> None:
        self.key = key
        self.pk = key.pk
        self.principal = principal

    def get_username(self) -> str:
        return f"key:{self.key.name}"

    @property
    def principal_name(self) -> str:
        return self.principal.label


def console_principal(user: Any) -> Principal | None:
    """The principal of a console user, or ``None`` if they may not use the API."""
    if not (user and user.is_authenticated and user.is_active and user.is_staff):
        return None
    if user.is_superuser:
        return Principal("console", user.get_username(), S.expand(frozenset(S.SCOPES)), None, str(user.pk))
    from access.models import TenantAdministrator

    tenant_ids = frozenset(TenantAdministrator.objects.filter(user=user).values_list("tenant_id", flat=True))
    return Principal("console", user.get_username(), S.expand(CONSOLE_ADMIN_SCOPES), tenant_ids, str(user.pk))


def principal_of(user: Any) -> Principal | None:
    if isinstance(user, KeyUser):
        return user.principal
    cached = getattr(user, "_iam_principal", None)
    if cached is None and user is not None:
        cached = console_principal(user)
        if cached is not None:
            user._iam_principal = cached
    return cached


def key_release(scopes: list[str], attributes: list[str] | None) -> Release:
    """The release policy of a key: its attribute list, PII only with ``pii:read``."""
    return release_of(attributes, pii=S.PII_READ in scopes)
