from typing import Any
from uuid import UUID

from django.apps import AppConfig


class TenantsConfig(AppConfig):
    name = "tenants"
    verbose_name = "Tenants"

    def ready(self) -> None:
        from django.db.models import F

        from attributes import holders
        from tenants.models import Tenant

        def schema_changed(tenant_id: UUID, **_: Any) -> None:
            Tenant.objects.filter(pk=tenant_id).update(schema_version=F("schema_version") + 1)

        holders.register("tenant", lambda tenant_id: Tenant.objects.filter(pk=tenant_id))
        holders.schema_changed.connect(schema_changed, weak=False, dispatch_uid="tenants.schema_version")
