"""``/api/v1/``: collections and resources end with ``/`` (DRF routers)."""

from __future__ import annotations

from rest_framework.routers import SimpleRouter

from attributes.api.views import AttributeDefinitionViewSet
from tenants.api.views import TenantViewSet
from users.api.views import UserViewSet

router = SimpleRouter()
router.register("tenants", TenantViewSet, basename="tenant")
router.register(r"tenants/(?P<tenant>[^/]+)/users", UserViewSet, basename="user")
router.register(
    r"tenants/(?P<tenant>[^/]+)/attribute-definitions", AttributeDefinitionViewSet, basename="attribute-definition"
)

urlpatterns = router.urls
