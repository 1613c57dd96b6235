from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from audit.models import AuditRecord
from console.support import ReadOnlyAdminMixin, TenantScopedAdmin, tenant_slug_or_id, with_tenant_slug


@admin.register(AuditRecord)
class AuditRecordAdmin(ReadOnlyAdminMixin, TenantScopedAdmin):
    """Read-only for everyone, superusers included: the audit log is written by the services only."""

    list_display = ["at", "actor_kind", "actor", "action", "object_type", "object_repr", "tenant"]
    list_filter = ["action", "object_type", "actor_kind"]
    search_fields = ["actor", "object_repr", "=object_id", "=tenant_id"]
    date_hierarchy = "at"
    show_full_result_count = False
    readonly_fields = [field.name for field in AuditRecord._meta.fields]

    def get_queryset(self, request: HttpRequest) -> Any:
        return with_tenant_slug(super().get_queryset(request))

    @admin.display(description="tenant")
    def tenant(self, obj: AuditRecord) -> str:
        return tenant_slug_or_id(obj)
