from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema_view
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from access import scopes as S
from api.attributes.serializers import DefinitionInputSerializer, DefinitionOutputSerializer
from api.base import TenantScopedViewSet, expected_version, with_etag
from api.crud import crud_schemas, crud_scopes
from attributes import services
from attributes.models import AttributeDefinition
from attributes.selectors import definition_get

TENANT_PARAM = OpenApiParameter("tenant", str, OpenApiParameter.PATH, description="Tenant id or slug.")
KEY_PARAM = OpenApiParameter("key", str, OpenApiParameter.PATH, description="The attribute key.")
ONE = [TENANT_PARAM, KEY_PARAM]


@extend_schema_view(
    **crud_schemas(DefinitionInputSerializer, DefinitionOutputSerializer, collection=[TENANT_PARAM], item=ONE)
)
class AttributeDefinitionViewSet(TenantScopedViewSet):
    scopes = crud_scopes(read=S.DIRECTORY_READ, write=S.SCHEMA_WRITE)
    lookup_url_kwarg = "key"
    serializer_class = DefinitionOutputSerializer
    ordering_fields = ["key", "created_at"]
    ordering = ["key"]
    filterset_fields = ["target", "type"]

    queryset = AttributeDefinition.objects.none()  # for the schema generator; requests use get_queryset

    def tenant_rows(self) -> QuerySet[AttributeDefinition]:
        return AttributeDefinition.objects.filter(tenant=self.tenant)

    def released(self, data: Any) -> Any:
        """A PII definition's ``default`` is a PII value: ``{"redacted": true}`` without ``pii:read``."""
        if not self.principal.release.pii:
            for item in data if isinstance(data, list) else [data]:
                if item.get("pii") and item.get("default") is not None:
                    item["default"] = {"redacted": True}
        return data

    def list(self, request: Request, tenant: str) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(self.released(DefinitionOutputSerializer(page, many=True).data))

    def create(self, request: Request, tenant: str) -> Response:
        data = DefinitionInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        definition = services.definition_create(tenant=self.tenant, **data.validated_data)
        return with_etag(
            Response(self.released(DefinitionOutputSerializer(definition).data), status=status.HTTP_201_CREATED),
            definition.version,
        )

    def retrieve(self, request: Request, tenant: str, key: str) -> Response:
        definition = definition_get(tenant_id=self.tenant.id, key=key)
        return with_etag(Response(self.released(DefinitionOutputSerializer(definition).data)), definition.version)

    def update(self, request: Request, tenant: str, key: str) -> Response:
        return self._write(request, key, partial=False)

    def partial_update(self, request: Request, tenant: str, key: str) -> Response:
        return self._write(request, key, partial=True)

    def _write(self, request: Request, key: str, *, partial: bool) -> Response:
        definition = definition_get(tenant_id=self.tenant.id, key=key)
        data = DefinitionInputSerializer(data=request.data, partial=partial)
        data.is_valid(raise_exception=True)
        write = services.definition_update if partial else services.definition_replace
        definition = write(definition=definition, expected_version=expected_version(request), **data.validated_data)
        return with_etag(Response(self.released(DefinitionOutputSerializer(definition).data)), definition.version)

    def destroy(self, request: Request, tenant: str, key: str) -> Response:
        definition = definition_get(tenant_id=self.tenant.id, key=key)
        services.definition_delete(definition=definition, expected_version=expected_version(request))
        return Response(status=status.HTTP_204_NO_CONTENT)
