from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema_view
from rest_framework import status
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response

from access import scopes as S
from api.base import ScopedViewSet, expected_version, tenants_visible_to, with_etag
from api.crud import crud_schemas
from api.release import released, within_release
from api.tenants.serializers import TenantInputSerializer, TenantOutputSerializer
from tenants import services
from tenants.models import Tenant
from tenants.selectors import tenant_get

LIFECYCLE_FIELDS = ("status", "slug")
TENANT_PARAM = OpenApiParameter("tenant", str, OpenApiParameter.PATH, description="Tenant id or slug.")


@extend_schema_view(**crud_schemas(TenantInputSerializer, TenantOutputSerializer, collection=[], item=[TENANT_PARAM]))
class TenantViewSet(ScopedViewSet):
    # update/partial_update need directory:write for the name and the attribute values; a change of
    # the tenant's lifecycle or address (``LIFECYCLE_FIELDS``) also needs tenants:write.
    scopes = {
        "list": S.DIRECTORY_READ,
        "retrieve": S.DIRECTORY_READ,
        "create": S.TENANTS_WRITE,
        "update": S.DIRECTORY_WRITE,
        "partial_update": S.DIRECTORY_WRITE,
        "destroy": S.TENANTS_WRITE,
    }
    lookup_url_kwarg = "tenant"
    lookup_value_regex = "[^/]+"
    serializer_class = TenantOutputSerializer
    ordering_fields = ["slug", "created_at", "updated_at"]
    filterset_fields = ["status", "slug"]

    def get_queryset(self) -> QuerySet[Tenant]:
        return tenants_visible_to(self.request)

    def _tenant(self) -> Tenant:
        return tenant_get(ref=self.kwargs["tenant"], queryset=self.get_queryset())

    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(released(self.principal, None, TenantOutputSerializer(page, many=True).data))

    def create(self, request: Request) -> Response:
        data = TenantInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        tenant = services.tenant_create(**data.validated_data)
        return with_etag(
            Response(
                released(self.principal, None, TenantOutputSerializer(tenant).data), status=status.HTTP_201_CREATED
            ),
            tenant.version,
        )

    def retrieve(self, request: Request, tenant: str) -> Response:
        obj = self._tenant()
        return with_etag(Response(released(self.principal, None, TenantOutputSerializer(obj).data)), obj.version)

    def update(self, request: Request, tenant: str) -> Response:
        return self._write(request, partial=False)

    def partial_update(self, request: Request, tenant: str) -> Response:
        return self._write(request, partial=True)

    def _write(self, request: Request, *, partial: bool) -> Response:
        obj = self._tenant()
        data = TenantInputSerializer(data=request.data, partial=partial)
        data.is_valid(raise_exception=True)
        fields = within_release(self.principal, obj.id, dict(data.validated_data), obj.attributes, partial=partial)
        self._check_lifecycle_scope(obj, fields if partial else {**services.REPLACE_DEFAULTS, **fields})
        write = services.tenant_update if partial else services.tenant_replace
        extra: dict[str, Any] = {"merge_attributes": True} if partial else {}
        obj = write(tenant=obj, expected_version=expected_version(request), **extra, **fields)
        return with_etag(Response(released(self.principal, None, TenantOutputSerializer(obj).data)), obj.version)

    def _check_lifecycle_scope(self, obj: Tenant, fields: dict[str, Any]) -> None:
        """Suspending, resuming or renaming the slug of a tenant needs tenants:write (not directory:write)."""
        changed = [name for name in LIFECYCLE_FIELDS if name in fields and fields[name] != getattr(obj, name)]
        if changed and not self.principal.has(S.TENANTS_WRITE):
            raise PermissionDenied(f"changing {' and '.join(changed)} of a tenant needs the scope {S.TENANTS_WRITE!r}")

    def destroy(self, request: Request, tenant: str) -> Response:
        services.tenant_delete(tenant=self._tenant(), expected_version=expected_version(request))
        return Response(status=status.HTTP_204_NO_CONTENT)
