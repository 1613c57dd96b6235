from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from core import probes
from iam_project.exposition import metrics_view

handler500 = "core.observability.server_error"

admin.site.site_header = "iam-service console"
admin.site.site_title = "iam-service"
admin.site.index_title = "Tenants, policy subjects and attribute schemas"
# The left-hand model list would take a quarter of a 1,400 px window from every changelist; the
# breadcrumbs and the index lead to the same pages.
admin.site.enable_nav_sidebar = False

urlpatterns = [
    path("healthz", probes.healthz, name="healthz"),
    path("readyz", probes.readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("api.urls")),
    path("scim/v2/tenants/<str:tenant>/", include("scim.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path(
        "api/redoc/", SpectacularRedocView.as_view(url_name="schema", template_name="api/redoc.html"), name="api-redoc"
    ),
    path("metrics", metrics_view, name="metrics"),
]
