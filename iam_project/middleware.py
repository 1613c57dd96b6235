"""Request-level middleware of our own."""

from __future__ import annotations

import json
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse


class BodySizeLimitMiddleware:
    """Answer 413 problem+json for an API body whose Content-Length is over the limit, before reading it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith("/api/"):
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            if length > limit:
                body = {
                    "type": "https://iam-service.citadel.internal/problems/payload-too-large",
                    "title": "Payload too large",
                    "status": 413,
                    "detail": f"the request body exceeds {limit} bytes",
                }
                return HttpResponse(json.dumps(body), status=413, content_type="application/problem+json")
        return self.get_response(request)
