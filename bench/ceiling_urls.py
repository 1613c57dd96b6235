"""The app's URLs plus ``/bench/ceiling``: the cheapest authenticated DRF view (``bench/pip.py``)."""

from __future__ import annotations

from django.urls import path
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from access import scopes as S
from access.permissions import ScopedView
from iam_project.urls import handler500
from iam_project.urls import urlpatterns as app_urlpatterns

__all__ = ["handler500", "urlpatterns"]


class CeilingView(ScopedView, APIView):
    """A small constant JSON behind the same middleware, Bearer-key authentication and throttle."""

    scopes = {"get": S.PIP_READ}

    def get(self, request: Request) -> Response:
        return Response({"ok": True})


urlpatterns = [path("bench/ceiling", CeilingView.as_view(), name="bench-ceiling"), *app_urlpatterns]
