"""SCIM error responses (RFC 7644 §3.12): ``urn:ietf:params:scim:api:messages:2.0:Error`` bodies with
the status as a string and a ``scimType`` where the RFC names one; every domain error, DRF error and
database refusal of a value becomes one."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.db import DataError, InterfaceError, OperationalError
from django.http import Http404
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import set_rollback

from core.errors import Conflict, DomainError, PreconditionFailed, ValidationFailed
from scim.filter import BadFilter
from scim.schemas import ERROR

logger = logging.getLogger(__name__)


class ScimError(Exception):
    """An error the SCIM door raises itself: a status, a ``scimType`` and a sentence."""

    def __init__(self, status: int, detail: str, scim_type: str | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.scim_type = status, detail, scim_type


def invalid_value(detail: str) -> ScimError:
    return ScimError(400, detail, "invalidValue")


def invalid_path(detail: str) -> ScimError:
    return ScimError(400, detail, "invalidPath")


def error_body(status: int, detail: str, scim_type: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"schemas": [ERROR], "status": str(status), "detail": detail}
    if scim_type:
        body["scimType"] = scim_type
    return body


def as_scim_error(exc: Exception) -> ScimError | None:
    """The SCIM error of ``exc``, or ``None`` for a bug (Django's 500 handler takes it)."""
    if isinstance(exc, ScimError):
        return exc
    if isinstance(exc, BadFilter):
        return ScimError(400, str(exc), "invalidFilter")
    if isinstance(exc, ValidationFailed):
        return ScimError(400, exc.detail, "invalidValue")
    if isinstance(exc, Conflict):
        return ScimError(409, exc.detail, "uniqueness")
    if isinstance(exc, PreconditionFailed):
        return ScimError(412, exc.detail)
    if isinstance(exc, DomainError):
        return ScimError(exc.status, exc.detail, "tooMany" if exc.status == 413 else None)
    if isinstance(exc, RequestDataTooBig):
        return ScimError(413, "the request body exceeds the size limit", "tooMany")
    if isinstance(exc, DataError):
        return ScimError(400, "a value in the request cannot be stored or compared", "invalidValue")
    if isinstance(exc, OperationalError | InterfaceError):
        logger.warning("database unavailable", extra={"error": f"{type(exc).__name__}: {exc}"[:500]})
        return ScimError(503, "the database is unreachable; retry shortly")
    if isinstance(exc, Http404):
        return ScimError(404, "not found")
    if isinstance(exc, exceptions.ParseError):
        return ScimError(400, str(exc.detail), "invalidSyntax")
    if isinstance(exc, exceptions.APIException):
        return ScimError(exc.status_code, str(exc.detail))
    return None


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    error = as_scim_error(exc)
    if error is None:
        return None
    set_rollback()
    headers = {}
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        headers["WWW-Authenticate"] = 'Bearer realm="iam-service"'
    wait = getattr(exc, "wait", None)
    if wait:
        headers["Retry-After"] = str(int(wait))
    if isinstance(exc, PreconditionFailed) and exc.current_version is not None:
        headers["ETag"] = f'W/"{exc.current_version}"'
    return Response(error_body(error.status, error.detail, error.scim_type), status=error.status, headers=headers)
