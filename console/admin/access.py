from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from access import scopes as S
from access.keys import api_key_create, api_key_revoke
from access.models import ApiKey, TenantAdministrator
from console.support import add_field_errors
from core.errors import ValidationFailed
from tenants.models import Tenant


class ApiKeyForm(forms.ModelForm):
    tenants = forms.ModelMultipleChoiceField(
        queryset=Tenant.objects.all(), required=False, help_text="Leave empty for a key that reaches every tenant."
    )
    scopes = forms.MultipleChoiceField(
        choices=[(s, f"{s} — {d}") for s, d in S.SCOPES.items()], widget=forms.CheckboxSelectMultiple
    )

    class Meta:
        model = ApiKey
        fields = ["name", "scopes", "expires_at"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Service-account keys: created here (shown once), revoked here; never edited."""

    form = ApiKeyForm
    list_display = ["name", "prefix", "scopes", "all_tenants", "expires_at", "revoked_at", "last_used_at"]
    list_filter = ["all_tenants", "revoked_at"]
    search_fields = ["name", "prefix"]
    actions = ["revoke"]

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a key's scopes and tenants are fixed: revoke it and create another

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoked keys stay for the audit trail

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser

    def save_model(self, request: HttpRequest, obj: ApiKey, form: forms.ModelForm, change: bool) -> None:
        try:
            key, raw = api_key_create(
                name=form.cleaned_data["name"],
                scopes=form.cleaned_data["scopes"],
                tenants=list(form.cleaned_data["tenants"]),
                expires_at=form.cleaned_data["expires_at"],
                created_by=f"console:{request.user.get_username()}",
            )
        except ValidationFailed as error:  # pragma: no cover - the form's choices already restrict
            add_field_errors(form, error, default_field="scopes")
            raise
        obj.pk = key.pk
        obj.__dict__.update({k: v for k, v in key.__dict__.items() if not k.startswith("_")})
        self.message_user(
            request, f"API key for {key.name}: {raw} — copy it now, it is not shown again.", messages.WARNING
        )

    def save_related(self, request: HttpRequest, form: forms.ModelForm, formsets: Any, change: bool) -> None:
        """api_key_create set the tenants."""

    @admin.action(description="Revoke selected keys (effective on their next request)")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for key in queryset:
            api_key_revoke(key=key)
        self.message_user(request, f"{queryset.count()} keys revoked.", messages.SUCCESS)

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions


@admin.register(TenantAdministrator)
class TenantAdministratorAdmin(admin.ModelAdmin):
    list_display = ["user", "tenant", "created_at"]
    list_select_related = ["user", "tenant"]
    autocomplete_fields = ["tenant"]
    search_fields = ["user__username", "tenant__slug"]

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser
