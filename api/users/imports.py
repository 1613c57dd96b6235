"""``/api/v1/tenants/{tenant}/imports/``: bulk imports as asynchronous jobs with a status resource."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import parsers, serializers, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from access import scopes as S
from api.base import TenantScopedViewSet
from core.errors import FieldError, NotFound, PayloadTooLarge, ValidationFailed
from imports.formats import MEDIA_TYPES, SUFFIXES, file_format
from imports.jobs import import_job_create
from imports.models import ImportJob

TENANT_PARAM = OpenApiParameter("tenant", str, OpenApiParameter.PATH, description="Tenant id or slug.")
JOB_PARAM = OpenApiParameter("job_id", OpenApiTypes.UUID, OpenApiParameter.PATH)


class RawFileParser(parsers.BaseParser):
    """The request body is the file itself (CSV or JSON Lines), up to ``IMPORT_MAX_BYTES``."""

    media_type = "*/*"

    def parse(  # type: ignore[override]  # DRF takes any value as request.data; djangorestframework-stubs allow only mappings
        self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None
    ) -> bytes:
        limit = settings.IMPORT_MAX_BYTES
        data = stream.read(limit + 1) if stream is not None else b""
        if len(data) > limit:
            raise PayloadTooLarge(f"an import file may take at most {limit} bytes")
        return data


class ImportJobSerializer(serializers.ModelSerializer):
    errors = serializers.SerializerMethodField(help_text="The first invalid rows (the full report: .../report).")  # type: ignore[assignment]  # the stubs see Serializer.errors; DRF's metaclass takes the declared field out of the class
    outcome = serializers.CharField(
        read_only=True, help_text="What the run did; counts of a run that wrote nothing are what it would have done."
    )

    class Meta:
        model = ImportJob
        fields = [
            "id", "status", "outcome", "file_name", "format", "mode", "dry_run", "rows", "created", "updated", "unchanged",
            "invalid", "written", "error", "errors", "created_by", "created_at", "finished_at",
        ]  # fmt: skip
        read_only_fields = fields

    def get_errors(self, job: ImportJob) -> list[str]:
        return job.report.splitlines()[1:101] if job.report else []


NON_EMPTY_FILE = {"type": "string", "format": "binary", "minLength": 1}


@extend_schema_view(
    list=extend_schema(parameters=[TENANT_PARAM], responses=ImportJobSerializer(many=True)),
    retrieve=extend_schema(parameters=[TENANT_PARAM, JOB_PARAM], responses=ImportJobSerializer),
    create=extend_schema(
        parameters=[
            TENANT_PARAM,
            OpenApiParameter("mode", str, enum=["atomic", "partial"]),
            OpenApiParameter("dry_run", bool),
            OpenApiParameter("file_name", str),
        ],
        request={
            "text/csv": NON_EMPTY_FILE,
            "application/x-ndjson": NON_EMPTY_FILE,
            "multipart/form-data": {"type": "object", "properties": {"file": NON_EMPTY_FILE}, "required": ["file"]},
        },
        responses={202: ImportJobSerializer},
    ),
    report=extend_schema(parameters=[TENANT_PARAM, JOB_PARAM], responses={(200, "text/csv"): OpenApiTypes.STR}),
)
class ImportJobViewSet(TenantScopedViewSet):
    scopes = {
        "list": S.DIRECTORY_READ,
        "retrieve": S.DIRECTORY_READ,
        "report": S.DIRECTORY_READ,
        "create": S.DIRECTORY_WRITE,
    }
    lookup_url_kwarg = "job_id"
    serializer_class = ImportJobSerializer
    parser_classes = [parsers.MultiPartParser, RawFileParser]  # `curl -F file=@users.csv`, or the raw body
    queryset = ImportJob.objects.none()
    ordering = ["-created_at"]
    filter_backends: list = []

    def tenant_rows(self) -> QuerySet[ImportJob]:
        return ImportJob.objects.filter(tenant=self.tenant).defer("content")

    def _job(self, job_id: str) -> ImportJob:
        try:
            return self.get_queryset().get(pk=uuid.UUID(job_id))
        except (ImportJob.DoesNotExist, ValueError):
            raise NotFound("no such import job") from None

    def list(self, request: Request, tenant: str) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(ImportJobSerializer(page, many=True).data)

    def create(self, request: Request, tenant: str) -> Response:
        content, file_name, fmt = self._upload(request)
        errors = []
        if fmt is None:
            kinds = ", ".join([*MEDIA_TYPES, *(f"a multipart file *{suffix}" for suffix in SUFFIXES)])
            errors.append(FieldError("/", "content_type", f"send the file as one of: {kinds}"))
        mode = request.query_params.get("mode", "atomic")
        if mode not in ("atomic", "partial"):
            errors.append(FieldError("/mode", "enum", "atomic or partial"))
        dry_run = request.query_params.get("dry_run", "false")
        if dry_run not in ("true", "false"):
            errors.append(FieldError("/dry_run", "type", "true or false"))
        if not content:
            errors.append(FieldError("/", "required", "the body, or its multipart part `file`, is the file to import"))
        if errors:
            raise ValidationFailed(errors)
        assert fmt is not None, "an unknown format is refused above"
        job = import_job_create(
            tenant=self.tenant,
            content=content,
            file_name=file_name[:255],
            fmt=fmt,
            mode=mode,
            dry_run=dry_run == "true",
        )
        job.refresh_from_db()
        location = f"{request.path}{job.id}/"
        return Response(ImportJobSerializer(job).data, status=status.HTTP_202_ACCEPTED, headers={"Location": location})

    @staticmethod
    def _upload(request: Request) -> tuple[bytes, str, str | None]:
        """The file's bytes, name and format: a multipart part ``file`` or the raw body."""
        if isinstance(request.data, bytes):
            name = request.query_params.get("file_name", "")
            return request.data, name, file_format(name=name, media_type=request.content_type or "")
        upload = request.FILES.get("file")
        if upload is None:
            return b"", "", None
        if upload.size > settings.IMPORT_MAX_BYTES:
            raise PayloadTooLarge(f"an import file may take at most {settings.IMPORT_MAX_BYTES} bytes")
        name = request.query_params.get("file_name") or upload.name or ""
        return upload.read(), name, file_format(name=upload.name or "", media_type=upload.content_type or "")

    def retrieve(self, request: Request, tenant: str, job_id: str) -> Response:
        return Response(ImportJobSerializer(self._job(job_id)).data)

    @action(detail=True, methods=["get"])
    def report(self, request: Request, tenant: str, job_id: str) -> HttpResponse:
        job = self._job(job_id)
        return HttpResponse(job.report or "line,external_id,pointer,rule,detail\n", content_type="text/csv")
