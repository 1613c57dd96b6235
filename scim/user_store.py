"""The SCIM Users endpoint's operations on one tenant, shared by the views and ``/Bulk``: each
write is one call of ``users/services.py`` (its event, audit record and cache invalidation).

Deprovisioning: ``active: false`` disables the user. ``DELETE`` follows the tenant's rule
(``SCIM_DEPROVISION`` / ``SCIM_DEPROVISION_TENANTS``): ``delete`` removes the user; ``suspend``
disables it and marks its profile ``deprovisioned`` (the time), after which SCIM answers 404 for
it and leaves it out of lists, as RFC 7644 §3.6 asks; a later ``POST`` of the same ``userName``
brings it back (the identity provider re-assigned it) instead of answering 409.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from attributes.models import AttributeDefinition
from attributes.selectors import definitions_for
from core.db.locking import named_lock
from core.errors import Conflict, NotFound
from groups.selectors import direct_groups_of_users, with_direct_groups
from scim.listing import ListQuery, list_response, page, projector
from scim.patch import Patcher, operations
from scim.schemas import ENTERPRISE, TENANT_EXTENSION, USER
from scim.users import PROFILE_LISTS, user_fields, user_resolver, user_resource
from tenants.models import Tenant
from users import services
from users.models import User
from users.selectors import user_get, users_of

DEPROVISIONED = "deprovisioned"
PATCHER = Patcher(
    core=USER, extensions=(ENTERPRISE, TENANT_EXTENSION), multi=set(PROFILE_LISTS), read_only={"id", "meta", "groups"}
)


def deprovision_rule(tenant: Tenant) -> str:
    return str(settings.SCIM_DEPROVISION_TENANTS.get(tenant.slug, settings.SCIM_DEPROVISION))


class UserStore:
    core, extensions = USER, (ENTERPRISE, TENANT_EXTENSION)

    def __init__(self, tenant: Tenant, base: str) -> None:
        self.tenant, self.base = tenant, base

    @cached_property
    def definitions(self) -> list[AttributeDefinition]:
        return definitions_for(tenant_id=self.tenant.id, target=AttributeDefinition.Target.USER)

    def queryset(self) -> QuerySet[User]:
        return users_of(tenant=self.tenant).exclude(profile__has_key=DEPROVISIONED)

    def get(self, user_id: str) -> User:
        user = user_get(tenant=self.tenant, user_id=user_id)
        if DEPROVISIONED in (user.profile or {}):
            raise NotFound("no such user in this tenant")
        return user

    def render(self, user: User, query: ListQuery | None = None) -> dict[str, Any]:
        return user_resource(user, self.base, direct_groups_of_users([user.id])[user.id])

    def listing(self, query: ListQuery) -> dict[str, Any]:
        project = projector(query, self.core, self.extensions)
        resolve = user_resolver(lambda: self.definitions)  # read only when the filter names the tenant's schema
        total, users = page(self.queryset(), query, resolve, with_direct_groups)
        return list_response(total, query, [project(user_resource(u, self.base, u.direct_groups)) for u in users])

    def create(self, body: Any) -> User:
        fields = user_fields(body, self.definitions)
        with transaction.atomic():
            same = self._claim(fields["external_id"])
            gone = [u for u in same if u.external_id == fields["external_id"] and DEPROVISIONED in u.profile]
            if gone:  # deprovisioned under the suspend rule, now provisioned again
                return services.user_replace(user=gone[0], attributes=fields.pop("attributes", {}), **fields)
            if same:
                raise Conflict(f"a user with userName {same[0].external_id!r} already exists in this tenant")
            return services.user_create(tenant=self.tenant, **fields)

    def _claim(self, user_name: str, *, renaming: User | None = None) -> list[User]:
        """The tenant's users whose userName is ``user_name`` but for case (``renaming`` left out), read
        under a transaction lock on the name: userName is unique without regard to case (RFC 7643
        §4.1.1, ``caseExact: false``), so two writes of case-variants of one name are serialised and
        the second sees the first (a REST API ``external_id`` stays case-sensitive)."""
        named_lock("scim.user_name", f"{self.tenant.pk}:{user_name.upper()}")
        same = users_of(tenant=self.tenant).filter(external_id__iexact=user_name)
        if renaming is not None:
            same = same.exclude(pk=renaming.pk)
        return list(same[:2])

    def _renamed(self, user: User, fields: dict[str, Any]) -> None:
        """Refuse a new userName that another user holds but for case (under the name's lock)."""
        name = fields.get("external_id", user.external_id)
        if name != user.external_id:
            clash = self._claim(name, renaming=user)
            if clash:
                raise Conflict(f"a user with userName {clash[0].external_id!r} already exists in this tenant")

    def replace(self, user_id: str, body: Any, *, version: int | None) -> User:
        user = self.get(user_id)
        fields = user_fields(body, self.definitions)
        # An extension the body leaves out is not this identity provider's to clear (docs/scim.md, "PUT").
        attributes = fields.pop("attributes", user.attributes)
        if not any(str(key).lower() == ENTERPRISE.lower() for key in body) and "enterprise" in user.profile:
            fields["profile"] = {**fields["profile"], "enterprise": user.profile["enterprise"]}
        with transaction.atomic():
            self._renamed(user, fields)
            return services.user_replace(user=user, expected_version=version, attributes=attributes, **fields)

    def patch(self, user_id: str, body: Any, *, version: int | None) -> User:
        ops = operations(body)
        user = self.get(user_id)
        current = {k: v for k, v in user_resource(user, self.base).items() if k not in ("id", "meta", "schemas")}
        fields = user_fields(PATCHER.apply(current, ops), self.definitions)
        with transaction.atomic():
            self._renamed(user, fields)
            return services.user_update(
                user=user, expected_version=version, attributes=fields.pop("attributes", {}), **fields
            )

    def delete(self, user_id: str, *, version: int | None) -> None:
        user = self.get(user_id)
        if deprovision_rule(self.tenant) == "delete":
            services.user_delete(user=user, expected_version=version)
            return
        profile = {**user.profile, DEPROVISIONED: timezone.now().isoformat().replace("+00:00", "Z")}
        services.user_update(user=user, expected_version=version, status=User.Status.DISABLED, profile=profile)
