from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest

from access.principals import acting_as, console_principal
from attributes.models import AttributeDefinition
from attributes.selectors import definitions_for
from attributes.validation import validate_attributes
from iam_project.admin_support import ServiceModelAdmin, add_field_errors
from iam_project.errors import ValidationFailed
from tenants import services
from tenants.models import Tenant


class TenantForm(forms.ModelForm):
    attributes = forms.JSONField(
        required=False, initial=dict, help_text='Attribute values as a JSON object, e.g. {"region": "eu"}.'
    )

    class Meta:
        model = Tenant
        fields = ["slug", "name", "status", "attributes"]

    def clean_attributes(self) -> Any:
        return self.cleaned_data.get("attributes") or {}

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if "attributes" in cleaned:
            definitions = (
                definitions_for(tenant_id=self.instance.pk, target=AttributeDefinition.Target.TENANT)
                if not self.instance._state.adding
                else []
            )
            try:
                cleaned["attributes"] = validate_attributes(definitions, cleaned["attributes"])
            except ValidationFailed as error:
                add_field_errors(self, error)
        return cleaned


@admin.register(Tenant)
class TenantAdmin(ServiceModelAdmin):
    tenant_lookup = "pk"
    tenant_admin_can_add = False  # creating and deleting tenants is for superusers
    tenant_admin_can_delete = False
    form = TenantForm
    list_display = ["slug", "name", "status", "version", "updated_at", "deleted_at"]
    list_filter = ["status", ("deleted_at", admin.EmptyFieldListFilter)]
    actions = ["restore"]
    search_fields = ["slug", "name", "=id"]
    readonly_fields = ["id", "version", "created_at", "updated_at"]
    fields = ["id", "slug", "name", "status", "attributes", "version", "created_at", "updated_at"]

    def service_create(self, request: HttpRequest, data: dict[str, Any]) -> Tenant:
        return services.tenant_create(**data)

    def service_update(self, request: HttpRequest, obj: Tenant, data: dict[str, Any]) -> Tenant:
        attributes = data.pop("attributes", None)
        return services.tenant_update(tenant=obj, attributes=attributes, **data)

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
