"""RFC 9457 problem details for every API error, including DRF's own and Django's.

Field errors carry ``errors: [{"pointer": "/attributes/level", "rule": "max", "detail": "…"}]``.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.db import DataError, InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from core.errors import DomainError, PreconditionFailed, ValidationFailed

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://iam-service.citadel.internal/problems/"


def problem_body(status_code: int, title: str, detail: str) -> dict[str, Any]:
    """The RFC 9457 members every problem of ours carries."""
    return {
        "type": TYPE_BASE + title.lower().replace(" ", "-"),
        "title": title,
        "status": status_code,
        "detail": detail,
    }


def plain_problem(status_code: int, title: str, detail: str) -> JsonResponse:
    """A problem answered outside DRF (middleware, Django's error handlers)."""
    return JsonResponse(problem_body(status_code, title, detail), status=status_code, content_type=PROBLEM_JSON)


def problem_response(
    status_code: int,
    title: str,
    detail: str,
    *,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    body = problem_body(status_code, title, detail)
    if errors:
        body["errors"] = errors
    body.update(extra)
    response = Response(body, status=status_code, headers=headers, content_type=PROBLEM_JSON)
    return response


def _drf_errors(data: Any, pointer: str = "") -> list[dict[str, Any]]:
    """Flatten DRF's nested ``ValidationError.detail`` into pointer/rule/detail items."""
    if isinstance(data, dict):
        items = []
        for key, value in data.items():
            sub = pointer if key == "non_field_errors" else f"{pointer}/{key}"
            items += _drf_errors(value, sub)
        return items
    if isinstance(data, list):
        if all(isinstance(item, exceptions.ErrorDetail | str) for item in data):
            return [
                {"pointer": pointer or "/", "rule": getattr(item, "code", "invalid"), "detail": str(item)}
                for item in data
            ]
        items = []
        for index, value in enumerate(data):
            items += _drf_errors(value, f"{pointer}/{index}")
        return items
    return [{"pointer": pointer or "/", "rule": getattr(data, "code", "invalid"), "detail": str(data)}]


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, RequestDataTooBig):
        set_rollback()
        return problem_response(413, "Payload too large", "the request body exceeds the size limit")
    if isinstance(exc, DomainError):
        set_rollback()
        headers = {}
        extra: dict[str, Any] = dict(getattr(exc, "members", None) or {})  # a domain error's own members
        if isinstance(exc, PreconditionFailed) and exc.current_version is not None:
            extra["current_version"] = exc.current_version
            headers["ETag"] = f'"{exc.current_version}"'
        errors = [e.as_dict() for e in exc.errors] if isinstance(exc, ValidationFailed) else None
        return problem_response(exc.status, exc.title, exc.detail, errors=errors, headers=headers, **extra)
    if isinstance(exc, OperationalError | InterfaceError):
        logger.warning("database unavailable", extra={"error": f"{type(exc).__name__}: {exc}"[:500]})
        set_rollback()
        return problem_response(
            503, "Service unavailable", "the database is unreachable; retry shortly", headers={"Retry-After": "5"}
        )
    if isinstance(exc, DataError):  # a value PostgreSQL refuses (out of range, bad encoding): the client's
        set_rollback()
        return problem_response(400, "Bad request", "a value in the request cannot be stored or compared")
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    if not isinstance(exc, exceptions.APIException):
        return None  # a real bug: Django's 500 handler (and its log line) takes over
    set_rollback()
    headers = {}
    auth_header = getattr(exc, "auth_header", None)  # set by DRF on a 401 of an authenticator with a header
    if auth_header:
        headers["WWW-Authenticate"] = auth_header
    wait = getattr(exc, "wait", None)  # exceptions.Throttled
    if wait:
        headers["Retry-After"] = str(int(wait))
    if isinstance(exc, exceptions.ValidationError):
        errors = _drf_errors(exc.detail)
        detail = "; ".join(f"{e['pointer']}: {e['detail']}" for e in errors)
        return problem_response(400, "Validation failed", detail, errors=errors, headers=headers)
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    title = {
        status.HTTP_401_UNAUTHORIZED: "Unauthorized",
        status.HTTP_403_FORBIDDEN: "Forbidden",
        status.HTTP_404_NOT_FOUND: "Not found",
        status.HTTP_405_METHOD_NOT_ALLOWED: "Method not allowed",
        status.HTTP_406_NOT_ACCEPTABLE: "Not acceptable",
        status.HTTP_415_UNSUPPORTED_MEDIA_TYPE: "Unsupported media type",
        status.HTTP_429_TOO_MANY_REQUESTS: "Too many requests",
    }.get(exc.status_code, "Error")
    return problem_response(exc.status_code, title, str(detail), headers=headers)
