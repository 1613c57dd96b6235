"""The CRUD of a tenant's versioned aggregate through its services: ETag on every answer, If-Match on
every write, PUT as a full replacement (the service's ``*_replace``), PATCH merging attributes.

A viewset names its serializers, its selector (``fetch``) and its services (``writes``); the doors'
rules (a 201 with the ETag, a 204 on delete, the version from If-Match) live here once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import Serializer

from api.base import TenantScopedViewSet, expected_version, with_etag
from api.release import released, within_release
from attributes.selectors import tenant_schema


def crud_scopes(read: str, write: str) -> dict[str, str]:
    """The scope of each CRUD action: ``read`` to list and retrieve, ``write`` for the rest."""
    return {"list": read, "retrieve": read, "create": write, "update": write, "partial_update": write, "destroy": write}


def crud_schemas(
    input_serializer: type[Serializer],
    output_serializer: type[Serializer],
    *,
    collection: list[OpenApiParameter],
    item: list[OpenApiParameter],
) -> dict[str, Any]:
    """The OpenAPI description of each CRUD action, for ``extend_schema_view(**…)``: ``collection``
    are the path parameters of list and create, ``item`` those of the other actions."""
    return {
        "list": extend_schema(parameters=collection, responses=output_serializer(many=True)),
        "create": extend_schema(parameters=collection, request=input_serializer, responses={201: output_serializer}),
        "retrieve": extend_schema(parameters=item, responses=output_serializer),
        "update": extend_schema(parameters=item, request=input_serializer, responses=output_serializer),
        "partial_update": extend_schema(parameters=item, request=input_serializer, responses=output_serializer),
        "destroy": extend_schema(parameters=item, responses={204: None}),
    }


@dataclass(frozen=True)
class AggregateServices:
    """The write services of one aggregate (``user_create``…): ``create`` takes the ``tenant``, the
    others the object as the keyword ``subject`` (``user=``)."""

    subject: str
    create: Callable[..., Any]
    update: Callable[..., Any]
    replace: Callable[..., Any]
    delete: Callable[..., None]


class VersionedCrudViewSet(TenantScopedViewSet):
    input_serializer: type[Serializer]
    output_serializer: type[Serializer]
    writes: AggregateServices

    def fetch(self, pk: str) -> Any:
        """The tenant's object with id ``pk`` (404 otherwise)."""
        raise NotImplementedError

    def service_create(self, **data: Any) -> Any:
        return self.writes.create(tenant=self.tenant, **data)

    def service_update(self, obj: Any, **kwargs: Any) -> Any:
        """``expected_version``, ``attributes``, ``merge_attributes`` and the changed fields."""
        return self.writes.update(**{self.writes.subject: obj}, **kwargs)

    def service_replace(self, obj: Any, **kwargs: Any) -> Any:
        """PUT: ``expected_version``, ``attributes`` and the given fields; the service defaults the rest."""
        return self.writes.replace(**{self.writes.subject: obj}, **kwargs)

    def service_delete(self, obj: Any, *, expected_version: int | None) -> None:
        self.writes.delete(**{self.writes.subject: obj}, expected_version=expected_version)

    def _released(self, data: Any) -> Any:
        """``data`` with what the principal's release policy lets out, the tenant's PII keys from its
        held schema (``tenant_schema``: no query while it holds)."""
        pii = tenant_schema(tenant_id=self.tenant.id, schema_version=self.tenant.schema_version).pii
        return released(self.principal, self.tenant.id, data, pii=pii)

    def _answer(self, obj: Any, code: int = status.HTTP_200_OK) -> Response:
        return with_etag(Response(self._released(self.output_serializer(obj).data), status=code), obj.version)

    def list(self, request: Request, **kwargs: Any) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(self._released(self.output_serializer(page, many=True).data))

    def create(self, request: Request, **kwargs: Any) -> Response:
        data = self.input_serializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = within_release(self.principal, self.tenant.id, dict(data.validated_data), {}, partial=True)
        return self._answer(self.service_create(**fields), status.HTTP_201_CREATED)

    def retrieve(self, request: Request, **kwargs: Any) -> Response:
        return self._answer(self.fetch(kwargs[self.lookup_url_kwarg or self.lookup_field]))

    def update(self, request: Request, **kwargs: Any) -> Response:
        return self._write(request, kwargs[self.lookup_url_kwarg or self.lookup_field], partial=False)

    def partial_update(self, request: Request, **kwargs: Any) -> Response:
        return self._write(request, kwargs[self.lookup_url_kwarg or self.lookup_field], partial=True)

    def _write(self, request: Request, pk: str, *, partial: bool) -> Response:
        obj = self.fetch(pk)
        data = self.input_serializer(data=request.data, partial=partial)
        data.is_valid(raise_exception=True)
        fields = within_release(
            self.principal, self.tenant.id, dict(data.validated_data), obj.attributes, partial=partial
        )
        version = expected_version(request)
        if partial:
            obj = self.service_update(obj, expected_version=version, merge_attributes=True, **fields)
        else:
            obj = self.service_replace(obj, expected_version=version, **fields)
        return self._answer(obj)

    def destroy(self, request: Request, **kwargs: Any) -> Response:
        self.service_delete(
            self.fetch(kwargs[self.lookup_url_kwarg or self.lookup_field]), expected_version=expected_version(request)
        )
        return Response(status=status.HTTP_204_NO_CONTENT)
