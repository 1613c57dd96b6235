"""``/scim/v2/tenants/{tenant}/``: a SCIM 2.0 service provider per tenant (RFC 7644 §6.1: multi-tenancy
by path prefix). ``{tenant}`` is the tenant's id or slug, as everywhere in the API."""

from __future__ import annotations

from django.urls import path

from scim.bulk import BulkView
from scim.views import CollectionView, ResourceTypesView, ResourceView, SchemasView, ServiceProviderConfigView

urlpatterns = [
    path("ServiceProviderConfig", ServiceProviderConfigView.as_view(), name="scim-config"),
    path("ResourceTypes", ResourceTypesView.as_view(), name="scim-resource-types"),
    path("ResourceTypes/<str:ident>", ResourceTypesView.as_view(), name="scim-resource-type"),
    path("Schemas", SchemasView.as_view(), name="scim-schemas"),
    path("Schemas/<str:ident>", SchemasView.as_view(), name="scim-schema"),
    path("Users", CollectionView.as_view(kind="Users"), name="scim-users"),
    path("Users/<str:ident>", ResourceView.as_view(kind="Users"), name="scim-user"),
    path("Groups", CollectionView.as_view(kind="Groups"), name="scim-groups"),
    path("Groups/<str:ident>", ResourceView.as_view(kind="Groups"), name="scim-group"),
    path("Bulk", BulkView.as_view(), name="scim-bulk"),
]
