"""``/api/v1/tenants/{tenant}/groups/``: groups (CRUD, filters, ETag/If-Match) and their members."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework.decorators import action
from rest_framework.filters import OrderingFilter
from rest_framework.request import Request
from rest_framework.response import Response

from access import scopes as S
from api.base import expected_version, with_etag
from api.crud import AggregateServices, VersionedCrudViewSet, crud_schemas, crud_scopes
from api.groups.serializers import (
    GroupInputSerializer,
    GroupOutputSerializer,
    MemberIdsSerializer,
    MembersChangeSerializer,
    MemberSerializer,
)
from core.errors import FieldError, NotFound, ValidationFailed
from groups import services
from groups.filters import GroupFilter
from groups.models import Group
from groups.selectors import group_get, groups_of, member_row, members_of

TENANT_PARAM = OpenApiParameter("tenant", str, OpenApiParameter.PATH, description="Tenant id or slug.")
GROUP_PARAM = OpenApiParameter("group_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The group's id.")
MEMBER_PARAM = OpenApiParameter(
    "member_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="A user or group id."
)
ONE = [TENANT_PARAM, GROUP_PARAM]


def _ids(data: Any) -> Any:
    if not isinstance(data, dict) or set(data) != {"ids"}:
        raise ValidationFailed([FieldError("/ids", "required", 'the body is {"ids": [...]}')])
    return data["ids"]


def _change_response(change: services.MembersChange) -> Response:
    body = {"users": change.users, "groups": change.groups, "version": change.group.version}
    return with_etag(Response(body), change.group.version)


@extend_schema_view(
    **crud_schemas(GroupInputSerializer, GroupOutputSerializer, collection=[TENANT_PARAM], item=ONE),
    members=extend_schema(parameters=ONE, request=MemberIdsSerializer, responses=MemberSerializer(many=True)),
    members_remove=extend_schema(parameters=ONE, request=MemberIdsSerializer, responses=MembersChangeSerializer),
    member=extend_schema(parameters=[*ONE, MEMBER_PARAM], request=None, responses=MembersChangeSerializer),
)
class GroupViewSet(VersionedCrudViewSet):
    scopes = {
        **crud_scopes(S.DIRECTORY_READ, S.DIRECTORY_WRITE),
        "members": S.DIRECTORY_READ,  # GET; POST is checked in the action (one route, two methods)
        "members_remove": S.DIRECTORY_WRITE,
        "member": S.DIRECTORY_WRITE,
    }
    lookup_url_kwarg = "group_id"
    serializer_class = output_serializer = GroupOutputSerializer
    input_serializer = GroupInputSerializer
    writes = AggregateServices(
        "group", services.group_create, services.group_update, services.group_replace, services.group_delete
    )
    filter_backends = [DjangoFilterBackend, OrderingFilter]
    filterset_class = GroupFilter
    ordering_fields = ["created_at", "updated_at", "key", "priority"]

    queryset = Group.objects.none()  # for the schema generator; requests use get_queryset

    def required_scope(self, request: Request) -> str | None:
        if getattr(self, "action", None) == "members" and request.method == "POST":
            return S.DIRECTORY_WRITE
        return super().required_scope(request)

    def tenant_rows(self) -> QuerySet[Group]:
        return groups_of(tenant=self.tenant)

    def fetch(self, pk: str) -> Group:
        return group_get(tenant=self.tenant, group_id=pk)

    @action(detail=True, methods=["get", "post"], url_path="members")
    def members(self, request: Request, tenant: str, group_id: str) -> Response:
        """GET: the direct members (cursor pages). POST ``{"ids": [...]}``: add up to 1,000 users or groups."""
        group = self.fetch(group_id)
        if request.method == "POST":
            change = services.group_members_add(
                group=group, ids=_ids(request.data), expected_version=expected_version(request)
            )
            return _change_response(change)
        page = self.paginate_queryset(members_of(group=group))
        return with_etag(self.get_paginated_response([member_row(m) for m in page or ()]), group.version)

    @action(detail=True, methods=["post"], url_path="members/remove")
    def members_remove(self, request: Request, tenant: str, group_id: str) -> Response:
        """``{"ids": [...]}``: remove up to 1,000 members; ids of the tenant that are not members are no-ops."""
        group = self.fetch(group_id)
        change = services.group_members_remove(
            group=group, ids=_ids(request.data), expected_version=expected_version(request)
        )
        return _change_response(change)

    @action(detail=True, methods=["put", "delete"], url_path=r"members/(?P<member_id>(?!remove/)[^/]+)")
    def member(self, request: Request, tenant: str, group_id: str, member_id: str) -> Response:
        """PUT: make one user or group a member; DELETE: remove it. 404 if it is no user or group of the
        tenant (DELETE: no member of the group), as for any id outside the tenant."""
        group = self.fetch(group_id)
        try:
            if request.method == "PUT":
                change = services.group_members_add(
                    group=group, ids=[member_id], expected_version=expected_version(request)
                )
            else:
                change = services.group_members_remove(
                    group=group, ids=[member_id], expected_version=expected_version(request)
                )
        except ValidationFailed as exc:
            if exc.errors and all(error.pointer == "/ids/0" for error in exc.errors):
                raise NotFound("no such user or group in this tenant") from None
            raise
        if request.method == "DELETE" and not (change.users or change.groups):
            raise NotFound("not a member of this group")
        return _change_response(change)
