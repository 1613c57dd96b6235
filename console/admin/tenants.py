from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest

from access.principals import console_principal
from attributes.models import AttributeDefinition
from attributes.selectors import definitions_for
from console.attribute_fields import (
    AttributeFieldsetsAdmin,
    AttributeFormMixin,
    attribute_values,
    with_attribute_fields,
)
from console.support import ServiceFormMixin, ServiceModelAdmin
from core.actors import acting_as
from tenants import services
from tenants.models import Tenant


class TenantForm(AttributeFormMixin, ServiceFormMixin, forms.ModelForm):
    """The tenant's fields, then one typed field per tenant attribute definition (none on the add page:
    a new tenant has no definitions yet)."""

    class Meta:
        model = Tenant
        fields = ["slug", "name", "status", "events_include_pii"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        assert cleaned is not None, "ModelForm.clean returns cleaned_data"
        cleaned["attributes"] = attribute_values(self)  # checked by the service, with the other fields
        return cleaned


TENANT_FIELDS = ("slug", "name", "status", "events_include_pii")


@admin.register(Tenant)
class TenantAdmin(AttributeFieldsetsAdmin, ServiceModelAdmin):
    tenant_lookup = "pk"
    tenant_admin_can_add = False  # creating and deleting tenants is for superusers
    tenant_admin_can_delete = False
    form = TenantForm
    list_display = ["slug", "name", "status", "version", "updated_at", "deleted_at"]
    list_filter = ["status", ("deleted_at", admin.EmptyFieldListFilter)]
    actions = ["restore"]
    search_fields = ["slug", "name", "=id"]
    ordering = ["-created_at"]
    readonly_fields = ["id", "version", "created_at", "updated_at"]

    def attribute_form(self, request: HttpRequest, obj: Tenant | None) -> type[forms.ModelForm]:
        """``TenantForm`` with the typed fields of the tenant's own attribute definitions (once per request)."""
        cached = getattr(request, "_iam_tenant_form", None)
        key = obj.pk if obj is not None else None
        if cached is not None and cached[0] == key:
            return cached[1]
        definitions = (
            definitions_for(tenant_id=obj.pk, target=AttributeDefinition.Target.TENANT) if obj is not None else []
        )
        form = with_attribute_fields(TenantForm, definitions, obj.attributes if obj is not None else {})
        request._iam_tenant_form = (key, form)  # type: ignore[attr-defined]  # a per-request memo of ours on Django's request
        return form

    def main_fields(self, obj: Tenant | None) -> list[str]:
        return list(TENANT_FIELDS) if obj is None else ["id", *TENANT_FIELDS]

    def service_create(self, request: HttpRequest, data: dict[str, Any]) -> Tenant:
        fields = {name: data[name] for name in TENANT_FIELDS if name in data}
        return services.tenant_create(attributes=data.get("attributes") or None, **fields)

    def service_update(self, request: HttpRequest, obj: Tenant, data: dict[str, Any]) -> Tenant:
        fields = {name: data[name] for name in TENANT_FIELDS if name in data}
        return services.tenant_update(tenant=obj, attributes=data.get("attributes"), **fields)

    def service_delete(self, request: HttpRequest, obj: Tenant) -> None:
        services.tenant_delete(tenant=obj)

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        """Deleting a tenant is a soft delete: nothing else is removed, nothing protects it."""
        names = [f"{obj} (soft delete: restorable for {settings.TENANT_RETENTION_DAYS} days)" for obj in objs]
        return names, {Tenant._meta.verbose_name_plural: len(names)}, set(), []

    @admin.action(description="Restore selected deleted tenants")
    def restore(self, request: HttpRequest, queryset: Any) -> None:
        restored = 0
        with acting_as(console_principal(request.user)):
            for tenant in queryset.filter(deleted_at__isnull=False):
                services.tenant_restore(tenant=tenant)
                restored += 1
        self.message_user(request, f"{restored} tenants restored.")

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)
        if not request.user.is_superuser:
            actions.pop("restore", None)
        return actions
