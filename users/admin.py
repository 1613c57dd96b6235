from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from attributes.models import AttributeDefinition
from attributes.selectors import definitions_for
from attributes.validation import validate_attributes
from iam_project.admin_support import ServiceModelAdmin, add_field_errors
from iam_project.errors import ValidationFailed
from users import services
from users.models import User


class UserForm(forms.ModelForm):
    attributes = forms.JSONField(
        required=False, initial=dict, help_text='Attribute values as a JSON object, e.g. {"department": "eng"}.'
    )

    class Meta:
        model = User
        fields = ["tenant", "external_id", "email", "display_name", "status", "attributes"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["external_id"].strip = False
        if not self.instance._state.adding:
            self.fields["tenant"].disabled = True

    def clean_attributes(self) -> Any:
        return self.cleaned_data.get("attributes") or {}

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        tenant = cleaned.get("tenant")
        errors = services.validate_external_id(cleaned.get("external_id", self.data.get("external_id", "")))
        if errors:
            add_field_errors(self, ValidationFailed(errors), default_field="external_id")
        if tenant is not None and "external_id" in cleaned:
            clash = User.objects.filter(tenant=tenant, external_id=cleaned["external_id"]).exclude(pk=self.instance.pk)
            if clash.exists():
                self.add_error("external_id", "A user with this external id already exists in this tenant.")
        if tenant is not None and "attributes" in cleaned:
            definitions = definitions_for(tenant_id=tenant.pk, target=AttributeDefinition.Target.USER)
            try:
                cleaned["attributes"] = validate_attributes(definitions, cleaned["attributes"])
            except ValidationFailed as error:
                add_field_errors(self, error)
        return cleaned


@admin.register(User)
class UserAdmin(ServiceModelAdmin):
    form = UserForm
    list_display = ["external_id", "tenant", "email", "display_name", "status", "version", "updated_at"]
    list_filter = ["status", "tenant"]
    list_select_related = ["tenant"]
    search_fields = ["external_id", "email", "display_name", "=id"]
    autocomplete_fields = ["tenant"]
    readonly_fields = ["id", "version", "created_at", "updated_at"]
    fields = [
        "id",
        "tenant",
        "external_id",
        "email",
        "display_name",
        "status",
        "attributes",
        "version",
        "created_at",
        "updated_at",
    ]
    show_full_result_count = False

    def service_create(self, request: HttpRequest, data: dict[str, Any]) -> User:
        return services.user_create(**data)

    def service_update(self, request: HttpRequest, obj: User, data: dict[str, Any]) -> User:
        data.pop("tenant", None)
        attributes = data.pop("attributes", None)
        return services.user_update(user=obj, attributes=attributes, **data)

    def service_delete(self, request: HttpRequest, obj: User) -> None:
        services.user_delete(user=obj)
