"""factory_boy factories that create through the services, so every object has its event."""

from __future__ import annotations

import factory

from attributes import services as attribute_services
from attributes.models import AttributeDefinition
from groups import services as group_services
from groups.models import Group
from tenants import services as tenant_services
from tenants.models import Tenant
from users import services as user_services
from users.models import User


class TenantFactory(factory.Factory):
    class Meta:
        model = Tenant

    slug = factory.Sequence(lambda n: f"tenant-{n}")
    name = factory.Sequence(lambda n: f"Tenant {n}")

    @classmethod
    def _create(cls, model_class, *args, **kwargs):  # type: ignore[no-untyped-def]
        return tenant_services.tenant_create(**kwargs)


class DefinitionFactory(factory.Factory):
    class Meta:
        model = AttributeDefinition

    tenant = factory.SubFactory(TenantFactory)
    key = factory.Sequence(lambda n: f"attr_{n}")
    type = "string"

    @classmethod
    def _create(cls, model_class, *args, **kwargs):  # type: ignore[no-untyped-def]
        return attribute_services.definition_create(**kwargs)


class UserFactory(factory.Factory):
    class Meta:
        model = User

    tenant = factory.SubFactory(TenantFactory)
    external_id = factory.Sequence(lambda n: f"user-{n}")
    email = factory.LazyAttribute(lambda o: f"{o.external_id.replace('/', '_')}@example.com")

    @classmethod
    def _create(cls, model_class, *args, **kwargs):  # type: ignore[no-untyped-def]
        return user_services.user_create(**kwargs)


class GroupFactory(factory.Factory):
    class Meta:
        model = Group

    tenant = factory.SubFactory(TenantFactory)
    key = factory.Sequence(lambda n: f"group-{n}")

    @classmethod
    def _create(cls, model_class, *args, **kwargs):  # type: ignore[no-untyped-def]
        return group_services.group_create(**kwargs)
