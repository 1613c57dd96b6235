from typing import Any
from uuid import UUID

from django.apps import AppConfig


class TenantsConfig(AppConfig):
    name = "tenants"
    verbose_name = "Tenants"

    def ready(self) -> None:
        from django.db.models import F

        from attributes import holders
        from outbox.changes import pii_in_events_from
        from tenants.models import Tenant

        def schema_changed(tenant_id: UUID, **_: Any) -> None:
            Tenant.objects.filter(pk=tenant_id).update(schema_version=F("schema_version") + 1)

        pii_in_events_from(lambda tenant_id: Tenant.objects.filter(pk=tenant_id, events_include_pii=True).exists())
        holders.register("tenant", lambda tenant_id: Tenant.objects.filter(pk=tenant_id))
        holders.schema_changed.connect(schema_changed, weak=False, dispatch_uid="tenants.schema_version")
