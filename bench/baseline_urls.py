"""``/bench/baseline``: DRF's hello world (``bench/baseline_settings.py``)."""

from __future__ import annotations

from django.urls import path
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView


class BaselineView(APIView):
    def get(self, request: Request) -> Response:
        return Response({"ok": True})


urlpatterns = [path("bench/baseline", BaselineView.as_view(), name="bench-baseline")]
