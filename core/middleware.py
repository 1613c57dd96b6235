"""Request-level middleware of our own."""

from __future__ import annotations

import re
from collections.abc import Callable
from http import HTTPStatus

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.middleware.common import CommonMiddleware

from core.api.problems import PROBLEM_JSON, plain_problem, problem_body

IMPORTS = re.compile(r"^/api/v1/tenants/[^/]+/imports/$")


class BodySizeLimitMiddleware:
    """Refuse, before reading the body: an API body whose Content-Length is over the limit (413), and a
    NUL character in the path or query (400: PostgreSQL cannot store it)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return refusal(request) or self.get_response(request)


def refusal(request: HttpRequest) -> HttpResponse | None:
    """:class:`BodySizeLimitMiddleware`'s answer for a request it refuses, else None."""
    if request.path.startswith("/api/"):
        if "\x00" in request.path or "%00" in request.META.get("QUERY_STRING", ""):
            return plain_problem(400, "Bad request", "NUL characters are not allowed in the path or query")
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        limit = settings.IMPORT_MAX_BYTES if IMPORTS.match(request.path) else settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if length > limit:
            return plain_problem(413, "Payload too large", f"the request body exceeds {limit} bytes")
    return None


class ApiProblemMiddleware:
    """Every error answer under ``/api/`` is ``application/problem+json``, whoever produced it.

    DRF's views already answer problems; this catches the rest: Django's 404 for an unknown route
    (the technical page in DEBUG), a 500 page, CSRF's 403, a 400 for a bad Host. The headers a client
    acts on (``Allow``, ``WWW-Authenticate``, ``Retry-After``) are kept.
    """

    KEPT_HEADERS = ("Allow", "WWW-Authenticate", "Retry-After", "Vary", "Cache-Control")

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            response.status_code < 400
            or not request.path.startswith("/api/")
            or response.get("Content-Type", "").startswith(PROBLEM_JSON)
        ):
            return response
        try:
            phrase = HTTPStatus(response.status_code).phrase
        except ValueError:
            phrase = "Error"
        title = phrase[:1] + phrase[1:].lower()
        detail = "no such resource" if response.status_code == 404 else title.lower()
        problem = plain_problem(response.status_code, title, detail)
        for header in self.KEPT_HEADERS:
            if header in response:
                problem[header] = response[header]
        return problem


class ApiCommonMiddleware(CommonMiddleware):
    """Django's ``CommonMiddleware``, except for a write to an API path without its trailing slash.

    ``APPEND_SLASH`` answers a missing slash with a 301, which clients follow by re-sending a POST,
    PUT, PATCH or DELETE as a GET (with ``DEBUG`` Django raises a ``RuntimeError`` instead: a 500).
    A REST client gets a problem+json 404 naming the canonical URL (``canonical_url``) so that the
    mistake shows at once; reads (GET, HEAD, OPTIONS) are still redirected.
    """

    def process_response(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        if (
            response.status_code == 404
            and request.method not in ("GET", "HEAD", "OPTIONS")
            and request.path.startswith("/api/")
            and self.should_redirect_with_slash(request)
        ):
            canonical = request.get_full_path(force_append_slash=True)
            body = problem_body(
                404,
                "Not found",
                f"{request.path} is not a resource; API collections and resources end with '/': {canonical}",
            )
            return JsonResponse({**body, "canonical_url": canonical}, status=404, content_type=PROBLEM_JSON)
        return super().process_response(request, response)
