from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin
from django.contrib.admin.widgets import AutocompleteSelect
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from access.principals import console_principal
from attributes.models import AttributeDefinition
from attributes.selectors import definitions_for
from console.admin.groups import USER_PANEL_FIELDS, UserGroupsAdmin
from console.attribute_fields import AttributeFieldsetsAdmin, AttributeFormMixin, with_attribute_fields
from console.support import (
    ServiceModelAdmin,
    TenantScopedAdmin,
    add_field_errors,
    administered_tenant_ids,
    short_id,
)
from core.actors import acting_as
from core.errors import ValidationFailed
from imports.jobs import import_job_create
from imports.transfer import file_format
from tenants.models import Tenant
from users import services
from users.models import ImportJob, User


class ChosenTenantWidget(forms.Widget):
    """Step two of adding a user: the tenant chosen in step one, shown (no picker, no icons) and posted."""

    def __init__(self, tenant: Tenant, change_url: str) -> None:
        super().__init__()
        self.tenant, self.change_url = tenant, change_url

    def render(self, name: str, value: Any, attrs: Any = None, renderer: Any = None) -> str:
        return format_html(
            '<input type="hidden" name="{}" value="{}" id="id_{}"><strong id="chosen-tenant">{}</strong>'
            ' &nbsp;<a href="{}">choose another tenant</a>',
            name,
            self.tenant.pk,
            name,
            self.tenant.slug,
            self.change_url,
        )


class UserForm(AttributeFormMixin, forms.ModelForm):
    """The user's fields, then one typed field per attribute definition of the user's tenant."""

    chosen_tenant: Tenant | None = None

    class Meta:
        model = User
        fields = ["tenant", "external_id", "email", "display_name", "status"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["external_id"].strip = False
        if "tenant" in self.fields and self.chosen_tenant is not None:
            self.fields["tenant"].widget = ChosenTenantWidget(self.chosen_tenant, "?")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        tenant = cleaned.get("tenant") if self.instance._state.adding else self.instance.tenant
        errors = services.validate_external_id(cleaned.get("external_id", self.data.get("external_id", "")))
        if errors:
            add_field_errors(self, ValidationFailed(errors), default_field="external_id")
        if tenant is not None and "external_id" in cleaned:
            clash = User.objects.filter(tenant=tenant, external_id=cleaned["external_id"]).exclude(pk=self.instance.pk)
            if clash.exists():
                self.add_error("external_id", "A user with this external id already exists in this tenant.")
        if tenant is not None:
            attributes = self.clean_attribute_values()
            if attributes is not None:
                cleaned["attributes"] = attributes
        return cleaned


class ChooseTenantForm(forms.Form):
    """Step one of adding a user: the tenant, picked with select2 over the admin's autocomplete view."""

    def __init__(self, *, tenants: Any, admin_site: admin.AdminSite) -> None:
        super().__init__()
        self.fields["tenant"] = forms.ModelChoiceField(
            queryset=tenants,
            widget=AutocompleteSelect(User._meta.get_field("tenant"), admin_site),
            help_text="The tenant of the new user.",
        )


USER_FIELDS = ("external_id", "email", "display_name", "status")


@admin.register(User)
class UserAdmin(UserGroupsAdmin, AttributeFieldsetsAdmin, ServiceModelAdmin):
    """Adding a user takes two steps: choose the tenant, then the form with that tenant's attribute fields."""

    form = UserForm
    list_display = ["external_id", "tenant", "email", "display_name", "status", "version", "updated_at"]
    list_filter = ["status", "tenant"]
    list_select_related = ["tenant"]
    search_fields = ["external_id", "email", "display_name", "=id"]
    ordering = ["-created_at"]
    show_full_result_count = False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        record = ["id", "version", "created_at", "updated_at"]
        return record if obj is None else ["tenant", *record, *USER_PANEL_FIELDS]  # a user never moves tenant

    def chosen_tenant(self, request: HttpRequest) -> Tenant | None:
        """The tenant an add form is for (``?tenant=`` in step two, the posted field on save), if visible."""
        raw = (request.POST if request.method == "POST" else request.GET).get("tenant", "")
        try:
            tenant_id = uuid.UUID(str(raw))
        except ValueError:
            return None
        tenant_ids = administered_tenant_ids(request)
        if tenant_ids is not None and tenant_id not in tenant_ids:
            return None
        return Tenant.objects.filter(pk=tenant_id, deleted_at__isnull=True).first()

    def attribute_form(self, request: HttpRequest, obj: User | None) -> type[forms.ModelForm]:
        """``UserForm`` with the typed fields of the tenant's user attribute definitions (once per request)."""
        tenant = obj.tenant if obj is not None else self.chosen_tenant(request)
        cache_key = (obj.pk if obj is not None else None, tenant.pk if tenant is not None else None)
        cached = getattr(request, "_iam_user_form", None)
        if cached is not None and cached[0] == cache_key:
            return cached[1]
        definitions = (
            definitions_for(tenant_id=tenant.pk, target=AttributeDefinition.Target.USER) if tenant is not None else []
        )
        form = with_attribute_fields(UserForm, definitions, obj.attributes if obj is not None else {})
        form.chosen_tenant = tenant if obj is None else None  # type: ignore[attr-defined]
        request._iam_user_form = (cache_key, form)  # type: ignore[attr-defined]
        return form

    def main_fields(self, obj: User | None) -> list[str]:
        return ["tenant", *USER_FIELDS] if obj is None else ["id", "tenant", *USER_FIELDS]

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> HttpResponse:
        if request.method == "POST" or self.chosen_tenant(request) is not None:
            return super().add_view(request, form_url, extra_context)
        if not self.has_add_permission(request):
            raise PermissionDenied
        return self.choose_tenant_view(request)

    def choose_tenant_view(self, request: HttpRequest) -> HttpResponse:
        """Step one of adding a user: pick the tenant (select2 over the admin's autocomplete view)."""
        tenant_ids = administered_tenant_ids(request)
        tenants = Tenant.objects.filter(deleted_at__isnull=True)
        form = ChooseTenantForm(
            tenants=tenants if tenant_ids is None else tenants.filter(pk__in=tenant_ids), admin_site=self.admin_site
        )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Add {self.opts.verbose_name}: choose the tenant",
            "form": form,
            "media": self.media + form.media,
            "has_view_permission": self.has_view_permission(request),
        }
        return TemplateResponse(request, "admin/users/user/choose_tenant.html", context)

    def response_add(self, request: HttpRequest, obj: User, post_url_continue: Any = None) -> HttpResponse:
        return self._add_another_in_the_same_tenant(request, obj, super().response_add(request, obj, post_url_continue))

    def response_change(self, request: HttpRequest, obj: User) -> HttpResponse:
        return self._add_another_in_the_same_tenant(request, obj, super().response_change(request, obj))

    def _add_another_in_the_same_tenant(self, request: HttpRequest, obj: User, response: HttpResponse) -> HttpResponse:
        """ "Save and add another" goes to step two for the same tenant, not back to choosing one."""
        if "_addanother" in request.POST and response.status_code == 302:
            response["Location"] = f"{reverse('admin:users_user_add')}?tenant={obj.tenant_id}"
        return response

    def service_create(self, request: HttpRequest, data: dict[str, Any]) -> User:
        fields = {name: data[name] for name in USER_FIELDS if name in data}
        return services.user_create(tenant=data["tenant"], attributes=data.get("attributes", {}), **fields)

    def service_update(self, request: HttpRequest, obj: User, data: dict[str, Any]) -> User:
        fields = {name: data[name] for name in USER_FIELDS if name in data}
        return services.user_update(user=obj, attributes=data.get("attributes"), **fields)

    def service_delete(self, request: HttpRequest, obj: User) -> None:
        services.user_delete(user=obj)


class ImportUploadForm(forms.ModelForm):
    upload = forms.FileField(help_text="CSV (header: external_id,email,display_name,status,attributes) or JSON Lines.")

    class Meta:
        model = ImportJob
        fields = ["tenant", "mode", "dry_run"]
        help_texts = {"dry_run": "Validate and count only: a preview of what the import would do."}

    def clean_upload(self) -> Any:
        upload = self.cleaned_data["upload"]
        if upload.size > settings.IMPORT_MAX_BYTES:
            raise forms.ValidationError(f"at most {settings.IMPORT_MAX_BYTES} bytes")
        return upload


@admin.register(ImportJob)
class ImportJobAdmin(TenantScopedAdmin):
    """Upload a file, preview its counts with a dry run, run it, download the error report."""

    form = ImportUploadForm
    list_display = ["short", "created_at", "tenant", "file_name", "mode", "dry_run", "status", "outcome"]
    list_display_links = ["short", "created_at"]
    ordering = ["-created_at"]  # newest first
    list_filter = ["status", "dry_run", "tenant"]
    list_select_related = ["tenant"]
    autocomplete_fields = ["tenant"]
    actions = ["run_for_real"]
    tenant_admin_can_delete = False
    readonly_fields = [
        "tenant", "file_name", "format", "mode", "dry_run", "status", "outcome", "rows", "created", "updated",
        "unchanged", "invalid", "written", "error", "report_link", "created_by", "created_at", "finished_at",
    ]  # fmt: skip

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ["tenant", "upload", "mode", "dry_run"] if obj is None else self.readonly_fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [] if obj is None else self.readonly_fields

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).defer("content")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False if obj is not None else super().has_change_permission(request, obj)

    @admin.display(description="id")
    def short(self, obj: ImportJob) -> str:
        return short_id(obj.pk)

    @admin.display(description="error report")
    def report_link(self, obj: ImportJob) -> str:
        if not obj.report:
            return "—"
        return format_html(
            '<a href="{}">Download the error report (CSV)</a>', reverse("admin:users_importjob_report", args=[obj.pk])
        )

    def save_model(self, request: HttpRequest, obj: ImportJob, form: forms.ModelForm, change: bool) -> None:
        upload = form.cleaned_data["upload"]
        name = upload.name or "upload"
        with acting_as(console_principal(request.user)):
            job = import_job_create(
                tenant=form.cleaned_data["tenant"],
                content=upload.read(),
                file_name=name,
                fmt=file_format(name=name, media_type=upload.content_type or "") or "jsonl",
                mode=form.cleaned_data["mode"],
                dry_run=form.cleaned_data["dry_run"],
            )
        obj.pk = job.pk
        obj._state.adding = False

    def save_related(self, request: HttpRequest, form: forms.ModelForm, formsets: Any, change: bool) -> None:
        """Nothing related to save."""

    def get_urls(self) -> list:
        from django.urls import path

        return [
            path("<uuid:job_id>/report/", self.admin_site.admin_view(self.report_view), name="users_importjob_report"),
            *super().get_urls(),
        ]

    def report_view(self, request: HttpRequest, job_id: Any) -> HttpResponse:
        job = self.get_queryset(request).filter(pk=job_id).first()
        if job is None:
            raise Http404("no such import job")
        response = HttpResponse(job.report, content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="{job.file_name or job.pk}.errors.csv"'
        return response

    @admin.action(description="Run the selected dry runs for real")
    def run_for_real(self, request: HttpRequest, queryset: Any) -> None:
        count = 0
        with acting_as(console_principal(request.user)):
            for job in queryset.filter(dry_run=True, status=ImportJob.Status.SUCCEEDED).defer(None):
                import_job_create(
                    tenant=job.tenant,
                    content=bytes(job.content),
                    file_name=job.file_name,
                    fmt=job.format,
                    mode=job.mode,
                )
                count += 1
        self.message_user(request, f"{count} imports queued.")
