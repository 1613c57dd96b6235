"""The import jobs' page: upload a file, preview its counts with a dry run, run it, download the error report."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import path, reverse
from django.utils.html import format_html

from access.principals import console_principal
from console.support import TenantScopedAdmin, short_id
from core.actors import acting_as
from imports.formats import file_format
from imports.jobs import import_job_create
from imports.models import ImportJob


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
            '<a href="{}">Download the error report (CSV)</a>', reverse("admin:imports_importjob_report", args=[obj.pk])
        )

    def save_model(self, request: HttpRequest, obj: ImportJob, form: forms.ModelForm, change: bool) -> None:
        upload = form.cleaned_data["upload"]
        name = upload.name or "upload"
        with acting_as(console_principal(request.user)):
            job = import_job_create(
                tenant=form.cleaned_data["tenant"],
                content=upload.read(),
                file_name=name,
                fmt=file_format(name=name, media_type=upload.content_type or "", fallback="jsonl"),
                mode=form.cleaned_data["mode"],
                dry_run=form.cleaned_data["dry_run"],
            )
        obj.pk = job.pk
        obj._state.adding = False

    def save_related(self, request: HttpRequest, form: forms.ModelForm, formsets: Any, change: bool) -> None:
        """Nothing related to save."""

    def get_urls(self) -> list:
        return [
            path(
                "<uuid:job_id>/report/", self.admin_site.admin_view(self.report_view), name="imports_importjob_report"
            ),
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
