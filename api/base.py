"""The base of every API view: tenant resolution, ETag and If-Match handling.

The tenant in a URL is resolved through :meth:`TenantScopedViewSet.tenant`, which derives it from
the tenants the authenticated principal may see, so a view cannot forget the scoping.
"""

from __future__ import annotations

import re
from contextvars import Token
from functools import cached_property
from typing import Any

from django.db.models import QuerySet
from rest_framework import viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from access.permissions import ScopedView
from access.principals import principal_of
from core.actors import Actor, acting
from core.errors import PreconditionFailed
from tenants.models import Tenant
from tenants.selectors import tenant_get

_ETAG = re.compile(r'^\s*(?:W/)?"(\d+)"\s*$')


def tenants_visible_to(request: Request) -> QuerySet[Tenant]:
    """The tenants the request's principal reaches: every query of the API starts here."""
    principal = principal_of(request.user)
    if principal is None:
        return Tenant.objects.none()
    return principal.tenants()


def etag(version: int) -> str:
    return f'"{version}"'


def expected_version(request: Request) -> int | None:
    """The version an ``If-Match`` header demands; ``None`` when the header is absent or ``*``."""
    header = request.headers.get("If-Match")
    if header is None or header.strip() == "*":
        return None
    for candidate in header.split(","):
        match = _ETAG.match(candidate)
        if match:
            return int(match.group(1))
    raise PreconditionFailed()


def with_etag(response: Response, version: int) -> Response:
    response["ETag"] = etag(version)
    return response


class ScopedViewSet(ScopedView, viewsets.GenericViewSet):
    """Base of every API viewset: scope-checked, and the principal is the actor of its writes."""

    _actor_token: Token[Actor | None] | None

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        self._actor_token = acting.set(principal_of(request.user))

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        token = getattr(self, "_actor_token", None)
        if token is not None:
            acting.reset(token)
            self._actor_token = None
        return super().finalize_response(request, response, *args, **kwargs)


class TenantScopedViewSet(ScopedViewSet):
    """A viewset under ``/tenants/{tenant}/``: ``self.tenant`` is resolved for the principal."""

    @cached_property
    def tenant(self) -> Tenant:
        return tenant_get(ref=self.kwargs["tenant"], queryset=tenants_visible_to(self.request))

    def tenant_rows(self) -> QuerySet[Any]:
        """The rows of ``self.tenant`` that this viewset serves."""
        raise NotImplementedError

    def get_queryset(self) -> QuerySet[Any]:
        if getattr(self, "swagger_fake_view", False):  # the schema generator: no request, no tenant
            return super().get_queryset().none()  # the class's ``queryset``, its model's
        return self.tenant_rows()
