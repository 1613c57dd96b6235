from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework.request import Request
from rest_framework.response import Response

from access import scopes as S
from api.crud import AggregateServices, VersionedCrudViewSet, crud_schemas, crud_scopes
from api.users.serializers import USER_OUTPUT_FIELDS, UserInputSerializer, UserOutputSerializer, user_rows
from users import services
from users.filters import AttributeFilterBackend, AttributeOrderingFilter, UserFilter
from users.models import User
from users.selectors import user_get, users_of

TENANT_PARAM = OpenApiParameter("tenant", str, OpenApiParameter.PATH, description="Tenant id or slug.")
USER_PARAM = OpenApiParameter("user_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The user's id.")
ONE = [TENANT_PARAM, USER_PARAM]


@extend_schema_view(
    **{
        **crud_schemas(UserInputSerializer, UserOutputSerializer, collection=[TENANT_PARAM], item=ONE),
        "list": extend_schema(
            responses=UserOutputSerializer(many=True),
            # Not a documented parameter: OpenAPI 3.0 cannot name a family of parameters ("attr.<key>").
            description="Search by attribute (docs/search.md): `attr.<key>=<value>` (equality), "
            "`attr.<key>__<op>=<value>` (eq ne in lt le gt ge between contains startswith has any all exists "
            "missing; list operands comma-separated), repeated parameters combined with AND, and "
            "`q=<expression>`, e.g. `q=clearance ge 3 AND (department eq eng OR NOT contractor eq true)`. "
            "`ordering=attr.<key>` or `-attr.<key>` sorts by an attribute (users without it are left out). "
            "A bad operator or value, an unknown key or an operator the type does not support is a 400.",
            parameters=[
                TENANT_PARAM,
                OpenApiParameter("q", str, description="An attribute search expression (docs/search.md)."),
            ],
        ),
    }
)
class UserViewSet(VersionedCrudViewSet):
    scopes = crud_scopes(read=S.DIRECTORY_READ, write=S.DIRECTORY_WRITE)
    lookup_url_kwarg = "user_id"
    serializer_class = output_serializer = UserOutputSerializer
    input_serializer = UserInputSerializer
    writes = AggregateServices(
        "user", services.user_create, services.user_update, services.user_replace, services.user_delete
    )
    filter_backends = [DjangoFilterBackend, AttributeFilterBackend, AttributeOrderingFilter]
    filterset_class = UserFilter
    ordering_fields = ["created_at", "updated_at", "external_id"]

    queryset = User.objects.none()  # for the schema generator; requests use get_queryset

    def tenant_rows(self) -> QuerySet[User]:
        return users_of(tenant=self.tenant)

    def fetch(self, pk: str) -> User:
        return user_get(tenant=self.tenant, user_id=pk)

    def list(self, request: Request, **kwargs: Any) -> Response:
        # Rows, not model instances: the page is shaped by user_rows exactly as UserOutputSerializer
        # would (tests/test_user_list_lean.py). An ordering annotation rides along for the cursor.
        found = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(found.values(*USER_OUTPUT_FIELDS, *found.query.annotations))
        return self.get_paginated_response(self._released(user_rows(page or ())))
