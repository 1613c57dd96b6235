"""The base of every SCIM view: a Bearer API key with ``scim:provision`` on the tenant of the path,
``application/scim+json`` (and ``application/json``) in and out, SCIM error bodies, the key as the
actor of every write, ETags as ``W/"<version>"``."""

from __future__ import annotations

import re
from contextvars import Token
from functools import cached_property
from typing import Any

from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from access import scopes as S
from access.authentication import ApiKeyAuthentication
from access.permissions import ScopedView
from access.principals import principal_of
from core.actors import Actor, acting
from core.api.parsers import LimitedJSONParser
from core.errors import PreconditionFailed
from scim import errors
from tenants.models import Tenant
from tenants.selectors import tenant_get

SCIM_JSON = "application/scim+json"
_ETAG = re.compile(r'^\s*(?:W/)?"(\d+)"\s*$')


class ScimJSONParser(LimitedJSONParser):
    media_type = SCIM_JSON


class ScimJSONRenderer(JSONRenderer):
    media_type = SCIM_JSON


def etag(version: int) -> str:
    return f'W/"{version}"'


def _versions(header: str) -> list[int | None]:
    """The versions an If-Match / If-None-Match header names; ``None`` for ``*`` or a foreign tag."""
    found: list[int | None] = []
    for candidate in header.split(","):
        if candidate.strip() == "*":
            return [None]
        match = _ETAG.match(candidate)
        found.append(int(match.group(1)) if match else -1)
    return found


def expected_version(request: Request) -> int | None:
    """The version ``If-Match`` demands (``None`` when absent or ``*``); 412 when it names none of ours."""
    header = request.headers.get("If-Match")
    if header is None:
        return None
    versions = _versions(header)
    if versions == [None]:
        return None
    for version in versions:
        if version is not None and version >= 0:
            return version
    raise PreconditionFailed()


def not_modified(request: Request, version: int) -> bool:
    """Whether ``If-None-Match`` names the current version (or ``*``): the GET answers 304."""
    header = request.headers.get("If-None-Match")
    if header is None:
        return False
    versions = _versions(header)
    return versions == [None] or version in versions


class ScimView(ScopedView, APIView):
    """Every method needs ``scim:provision``; the tenant of the path is resolved among the key's."""

    scopes = {method: S.SCIM_PROVISION for method in ("get", "post", "put", "patch", "delete")}
    authentication_classes = [ApiKeyAuthentication]
    parser_classes = [ScimJSONParser, LimitedJSONParser]
    renderer_classes = [ScimJSONRenderer, JSONRenderer]
    schema = None  # not in the OpenAPI document: SCIM describes itself (/Schemas, /ResourceTypes)
    _actor_token: Token[Actor | None] | None = None

    def get_exception_handler(self) -> Any:
        return errors.exception_handler

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        self._actor_token = acting.set(principal_of(request.user))

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        if self._actor_token is not None:
            acting.reset(self._actor_token)
            self._actor_token = None
        return super().finalize_response(request, response, *args, **kwargs)

    @cached_property
    def tenant(self) -> Tenant:
        return tenant_get(ref=self.kwargs["tenant"], queryset=self.principal.tenants())

    @property
    def base_url(self) -> str:
        return self.request.build_absolute_uri(f"/scim/v2/tenants/{self.kwargs['tenant']}")

    @staticmethod
    def answer(body: Any, status: int = 200, version: int | None = None, location: str | None = None) -> Response:
        response = Response(body, status=status)
        if version is not None:
            response["ETag"] = etag(version)
        if location is not None:
            response["Location"] = location
        return response
