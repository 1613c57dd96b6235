from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from access import scopes as S
from api.attributes.serializers import DefinitionInputSerializer, DefinitionOutputSerializer
from api.base import TenantScopedViewSet, expected_version, with_etag
from attributes import services
from attributes.models import AttributeDefinition
from attributes.selectors import definition_get

TENANT_PARAM = OpenApiParameter("tenant", str, OpenApiParameter.PATH, description="Tenant id or slug.")
DEFAULTS = {
    "target": "user", "required": False, "allowed_values": None, "pattern": "", "min_value": None,
    "max_value": None, "max_length": None, "max_items": None, "description": "", "pii": False,
    "default": None, "merge": "replace",
}  # fmt: skip


KEY_PARAM = OpenApiParameter("key", str, OpenApiParameter.PATH, description="The attribute key.")
ONE = [TENANT_PARAM, KEY_PARAM]


@extend_schema_view(
    list=extend_schema(parameters=[TENANT_PARAM], responses=DefinitionOutputSerializer(many=True)),
    create=extend_schema(
        parameters=[TENANT_PARAM], request=DefinitionInputSerializer, responses={201: DefinitionOutputSerializer}
    ),
    retrieve=extend_schema(parameters=ONE, responses=DefinitionOutputSerializer),
    update=extend_schema(parameters=ONE, request=DefinitionInputSerializer, responses=DefinitionOutputSerializer),
    partial_update=extend_schema(
        parameters=ONE, request=DefinitionInputSerializer, responses=DefinitionOutputSerializer
    ),
    destroy=extend_schema(parameters=ONE, responses={204: None}),
)
class AttributeDefinitionViewSet(TenantScopedViewSet):
    scopes = {
        "list": S.DIRECTORY_READ,
        "retrieve": S.DIRECTORY_READ,
        "create": S.SCHEMA_WRITE,
        "update": S.SCHEMA_WRITE,
        "partial_update": S.SCHEMA_WRITE,
        "destroy": S.SCHEMA_WRITE,
    }
    lookup_url_kwarg = "key"
    serializer_class = DefinitionOutputSerializer
    ordering_fields = ["key", "created_at"]
    ordering = ["key"]
    filterset_fields = ["target", "type"]

    queryset = AttributeDefinition.objects.none()  # for the schema generator; requests use get_queryset

    def get_queryset(self):  # type: ignore[no-untyped-def]
        if getattr(self, "swagger_fake_view", False):
            return AttributeDefinition.objects.none()
        return AttributeDefinition.objects.filter(tenant=self.tenant)

    def list(self, request: Request, tenant: str) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(DefinitionOutputSerializer(page, many=True).data)

    def create(self, request: Request, tenant: str) -> Response:
        data = DefinitionInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        definition = services.definition_create(tenant=self.tenant, **data.validated_data)
        return with_etag(
            Response(DefinitionOutputSerializer(definition).data, status=status.HTTP_201_CREATED), definition.version
        )

    def retrieve(self, request: Request, tenant: str, key: str) -> Response:
        definition = definition_get(tenant_id=self.tenant.id, key=key)
        return with_etag(Response(DefinitionOutputSerializer(definition).data), definition.version)

    def update(self, request: Request, tenant: str, key: str) -> Response:
        return self._write(request, key, partial=False)

    def partial_update(self, request: Request, tenant: str, key: str) -> Response:
        return self._write(request, key, partial=True)

    def _write(self, request: Request, key: str, *, partial: bool) -> Response:
        definition = definition_get(tenant_id=self.tenant.id, key=key)
        data = DefinitionInputSerializer(data=request.data, partial=partial)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data) if partial else {**DEFAULTS, **data.validated_data}
        definition = services.definition_update(
            definition=definition, expected_version=expected_version(request), **fields
        )
        return with_etag(Response(DefinitionOutputSerializer(definition).data), definition.version)

    def destroy(self, request: Request, tenant: str, key: str) -> Response:
        definition = definition_get(tenant_id=self.tenant.id, key=key)
        services.definition_delete(definition=definition, expected_version=expected_version(request))
        return Response(status=status.HTTP_204_NO_CONTENT)
