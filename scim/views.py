"""``/scim/v2/tenants/{tenant}/``: discovery, Users and Groups. Thin: each view reads the request and
calls the tenant's store (:mod:`scim.user_store`, :mod:`scim.group_store`)."""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.response import Response

from attributes.models import AttributeDefinition
from attributes.selectors import definitions_for
from scim.base import ScimView, expected_version, not_modified
from scim.errors import ScimError
from scim.group_store import GroupStore
from scim.listing import ListQuery, list_query, list_response, projector
from scim.schemas import all_schemas, resource_types, service_provider_config
from scim.user_store import UserStore


class ServiceProviderConfigView(ScimView):
    def get(self, request: Request, tenant: str) -> Response:
        self.tenant  # noqa: B018 - a tenant the key does not reach is a 404 here too
        return self.answer(service_provider_config(self.base_url))


def _one_or_list(found: list[dict[str, Any]], ident: str | None, what: str) -> dict[str, Any]:
    if ident is None:
        query = ListQuery(None, None, False, 1, len(found), [], [])
        return list_response(len(found), query, found)
    for item in found:
        if item["id"] == ident:
            return item
    raise ScimError(404, f"no such {what} {ident!r}")


class ResourceTypesView(ScimView):
    def get(self, request: Request, tenant: str, ident: str | None = None) -> Response:
        self.tenant  # noqa: B018 - resolved for the 404 of a tenant outside the key
        return self.answer(_one_or_list(resource_types(self.base_url), ident, "resource type"))


class SchemasView(ScimView):
    def get(self, request: Request, tenant: str, ident: str | None = None) -> Response:
        definitions = definitions_for(tenant_id=self.tenant.id, target=AttributeDefinition.Target.USER)
        return self.answer(_one_or_list(all_schemas(self.base_url, definitions), ident, "schema"))


class _ResourceView(ScimView):
    kind = ""

    @property
    def store(self) -> Any:
        return (UserStore if self.kind == "Users" else GroupStore)(self.tenant, self.base_url)

    def one(self, obj: Any, status: int = 200) -> Response:
        location = f"{self.base_url}/{self.kind}/{obj.id}"
        return self.answer(self.store.render(obj), status, obj.version, location if status == 201 else None)


class CollectionView(_ResourceView):
    def get(self, request: Request, tenant: str) -> Response:
        return self.answer(self.store.listing(list_query(request.query_params)))

    def post(self, request: Request, tenant: str) -> Response:
        return self.one(self.store.create(request.data), 201)


class ResourceView(_ResourceView):
    def get(self, request: Request, tenant: str, ident: str) -> Response:
        store = self.store
        obj = store.get(ident)
        if not_modified(request, obj.version):
            return self.answer(None, 304, obj.version)
        query = list_query(request.query_params)
        body = projector(query, store.core, store.extensions)(store.render(obj, query))
        return self.answer(body, 200, obj.version)

    def put(self, request: Request, tenant: str, ident: str) -> Response:
        return self.one(self.store.replace(ident, request.data, version=expected_version(request)))

    def patch(self, request: Request, tenant: str, ident: str) -> Response:
        query = list_query(request.query_params)  # a bad parameter refuses the request before it writes
        obj = self.store.patch(ident, request.data, version=expected_version(request))
        if self.kind == "Groups" and not query.attributes:  # RFC 7644 §3.5.2: 204, never a large group's members
            return self.answer(None, 204, obj.version)
        return self.answer(projector(query, self.store.core, self.store.extensions)(self.store.render(obj, query)),
                           200, obj.version)  # fmt: skip

    def delete(self, request: Request, tenant: str, ident: str) -> Response:
        self.store.delete(ident, version=expected_version(request))
        return self.answer(None, 204)
