"""The app's URLs plus ``/bench/ceiling``: the cheapest authenticated view (``bench/pip.py``).

A constant JSON under ``pip:read``, served like the PIP lookups: by the lean door
(``LEAN_ROUTES`` below, added by ``bench/ceiling_settings.py``) with the same middleware, Bearer-key
authentication, revocation check and throttle; the DRF view answers what the door leaves to the
full stack (and names the route for the metrics).
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import path
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from access import scopes as S
from access.permissions import ScopedView
from access.principals import Principal
from api.lean import LeanRoute
from iam_project.urls import handler500
from iam_project.urls import urlpatterns as app_urlpatterns

__all__ = ["LEAN_ROUTES", "handler500", "urlpatterns"]


class CeilingView(ScopedView, APIView):
    scopes = {"get": S.PIP_READ}
    throttle_scope = "pip"

    def get(self, request: Request) -> Response:
        return Response({"ok": True})


def ceiling(request: HttpRequest, principal: Principal, kwargs: dict[str, str], prefetched: list[Any]) -> HttpResponse:
    return HttpResponse(b'{"ok":true}', content_type="application/json")


LEAN_ROUTES = [LeanRoute(r"^/bench/ceiling$", frozenset({"GET", "HEAD"}), S.PIP_READ, "/bench/ceiling", ceiling)]
urlpatterns = [path("bench/ceiling", CeilingView.as_view(), name="bench-ceiling"), *app_urlpatterns]
