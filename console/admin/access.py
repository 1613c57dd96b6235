from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest

from access import scopes as S
from access.keys import api_key_create, api_key_release_set, api_key_revoke
from access.models import ApiKey, PiiReadCount, TenantAdministrator
from access.release import attributes_clean
from console.support import ReadOnlyAdminMixin, add_field_errors
from core.errors import ValidationFailed
from tenants.models import Tenant


def clean_attribute_list(text: str) -> list[str] | None:
    """The release policy's list as the service will check it: refused here, on the field."""
    try:
        return attributes_clean(text)
    except ValidationFailed as error:
        raise forms.ValidationError([f"{item.pointer} [{item.rule}] {item.detail}" for item in error.errors]) from None


class ApiKeyForm(forms.ModelForm):
    tenants = forms.ModelMultipleChoiceField(
        queryset=Tenant.objects.all(), required=False, help_text="Leave empty for a key that reaches every tenant."
    )
    scopes = forms.MultipleChoiceField(
        choices=[(s, f"{s} — {d}") for s, d in S.SCOPES.items()], widget=forms.CheckboxSelectMultiple
    )

    release_attributes = forms.CharField(
        required=False,
        label="Attributes",
        help_text="Release policy: comma-separated attribute keys the key may read (* for every key); "
        "empty for every key. PII-flagged values need the pii:read scope too.",
    )

    class Meta:
        model = ApiKey
        fields = ["name", "scopes", "expires_at"]

    def clean_release_attributes(self) -> list[str] | None:
        return clean_attribute_list(self.cleaned_data["release_attributes"])


class ApiKeyReleaseForm(forms.ModelForm):
    """The change page: a key's release policy (its attribute list and pii:read); the rest is fixed."""

    release_attributes = forms.CharField(
        required=False, label="Attributes", help_text=ApiKeyForm.base_fields["release_attributes"].help_text
    )
    pii_read = forms.BooleanField(required=False, label="pii:read", help_text=S.SCOPES[S.PII_READ])

    class Meta:
        model = ApiKey
        fields: list[str] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.initial["release_attributes"] = ",".join(self.instance.attributes or [])
        self.initial["pii_read"] = S.PII_READ in (self.instance.scopes or [])

    def clean_release_attributes(self) -> list[str] | None:
        return clean_attribute_list(self.cleaned_data["release_attributes"])


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
        return request.user.is_superuser  # the release policy only (ApiKeyReleaseForm); scopes and tenants are fixed

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is not None:
            kwargs["form"] = ApiKeyReleaseForm
            kwargs["fields"] = ["release_attributes", "pii_read"]
        return super().get_form(request, obj, change, **kwargs)

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is not None:
            return [(None, {"fields": ["release_attributes", "pii_read"]})]
        return super().get_fieldsets(request, obj)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return []

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoked keys stay for the audit trail

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser

    def save_model(self, request: HttpRequest, obj: ApiKey, form: forms.ModelForm, change: bool) -> None:
        if change:
            attributes, pii = form.cleaned_data["release_attributes"], form.cleaned_data["pii_read"]
            api_key_release_set(key=obj, attributes=attributes, pii=pii)  # the form checked the list
            return
        try:
            key, raw = api_key_create(
                name=form.cleaned_data["name"],
                scopes=form.cleaned_data["scopes"],
                tenants=list(form.cleaned_data["tenants"]),
                expires_at=form.cleaned_data["expires_at"],
                created_by=f"console:{request.user.get_username()}",
                attributes=form.cleaned_data.get("release_attributes"),
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


@admin.register(PiiReadCount)
class PiiReadCountAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Reads of PII by pii:read keys, per key per hour (access/pii_audit.py): read-only."""

    list_display = ["hour", "key", "key_id", "count"]
    list_filter = ["hour"]
    search_fields = ["=key_id"]
    date_hierarchy = "hour"

    def get_queryset(self, request: HttpRequest) -> QuerySet[PiiReadCount]:
        """Each row with its key's name and prefix in the page's one query (not a query per row)."""
        key = ApiKey.objects.filter(pk=OuterRef("key_id"))
        return (
            super()
            .get_queryset(request)
            .annotate(key_name=Subquery(key.values("name")[:1]), key_prefix=Subquery(key.values("prefix")[:1]))
        )

    @admin.display(description="key")
    def key(self, obj: PiiReadCount) -> str:
        name, prefix = getattr(obj, "key_name", None), getattr(obj, "key_prefix", None)
        return f"{name} ({prefix}…)" if name is not None else "(deleted key)"

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser
