from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from iam_project import probes
from iam_project.exposition import metrics_view

handler404 = "iam_project.api.problems.not_found"
handler500 = "iam_project.observability.server_error"

admin.site.site_header = "iam-service console"
admin.site.site_title = "iam-service"
admin.site.index_title = "Tenants, policy subjects and attribute schemas"

urlpatterns = [
    path("healthz", probes.healthz, name="healthz"),
    path("readyz", probes.readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("iam_project.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="api-redoc"),
    path("metrics", metrics_view, name="metrics"),
]
