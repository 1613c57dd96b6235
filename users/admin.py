from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html

from access.principals import acting_as, console_principal
from attributes.models import AttributeDefinition
from attributes.selectors import definitions_for
from attributes.validation import validate_attributes
from iam_project.admin_support import ServiceModelAdmin, TenantScopedAdmin, add_field_errors
from iam_project.errors import ValidationFailed
from users import services
from users.jobs import import_job_create
from users.models import ImportJob, User
from users.transfer import file_format


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
    list_display = [
        "created_at",
        "tenant",
        "file_name",
        "mode",
        "dry_run",
        "status",
        "outcome",
    ]
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
