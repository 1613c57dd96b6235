"""``/api/v1/``: collections and resources end with ``/`` (DRF routers)."""

from __future__ import annotations

from django.urls import path, re_path
from rest_framework.routers import SimpleRouter

from api.attributes.views import AttributeDefinitionViewSet
from api.groups.views import GroupViewSet
from api.resolver.views import BundleView, SubjectBatchView, SubjectLookupView
from api.tenants.views import TenantViewSet
from api.users.imports import ImportJobViewSet
from api.users.views import UserViewSet

router = SimpleRouter()
router.register("tenants", TenantViewSet, basename="tenant")
router.register(r"tenants/(?P<tenant>[^/]+)/users", UserViewSet, basename="user")
router.register(r"tenants/(?P<tenant>[^/]+)/groups", GroupViewSet, basename="group")
router.register(r"tenants/(?P<tenant>[^/]+)/imports", ImportJobViewSet, basename="import-job")
router.register(
    r"tenants/(?P<tenant>[^/]+)/attribute-definitions", AttributeDefinitionViewSet, basename="attribute-definition"
)

urlpatterns = [
    # The PIP paths have no trailing slash; an external id may contain '/' (percent-encoded or not).
    re_path(
        r"^pip/tenants/(?P<tenant>[^/]+)/subjects/(?P<external_id>.+)$",
        SubjectLookupView.as_view(),
        name="pip-subject",
    ),
    path("pip/tenants/<str:tenant>/bundle.tar.gz", BundleView.as_view(), name="pip-bundle"),
    path("pip/resolve", SubjectBatchView.as_view(), name="pip-resolve"),
    *router.urls,
]
