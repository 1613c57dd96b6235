"""The one fail-closed permission of the API: authenticated, then the method, then the view's scope.

The order of refusals: no or bad credentials → 401; a method the resource does not
have → 405 with ``Allow`` (DRF would otherwise find no scope for it and answer 403, since permissions
run in ``initial()`` before the method is dispatched); a scope the principal lacks → 403.

A view (or viewset action) that declares no scope is refused for everyone, so a new endpoint cannot
be reachable by accident; ``tests/test_access.py`` also enumerates every URL pattern.
"""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import MethodNotAllowed
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from access.principals import Principal, principal_of


class ScopedView:
    """Mixin of every API view: ``scopes`` maps a viewset action (or an HTTP method) to a scope."""

    scopes: dict[str, str] = {}
    request: Any  # the Request of the DRF view this is mixed into

    def required_scope(self, request: Request) -> str | None:
        assert request.method is not None, "a served request has a method"
        method = request.method.lower()
        action = getattr(self, "action", None) or ("get" if method == "head" else method)
        if action == "metadata" or request.method == "OPTIONS":
            action = "options"
        return self.scopes.get(action)

    @property
    def principal(self) -> Principal:
        principal = principal_of(self.request.user)
        assert principal is not None, "ScopePermission runs before any handler"
        return principal


class ScopePermission(BasePermission):
    message = "this principal lacks the scope the operation needs"

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if user is None or not user.is_authenticated:
            return False  # DRF answers 401 (an authenticator offered a challenge)
        assert request.method is not None, "a served request has a method"
        if not has_handler(view, request.method):
            raise MethodNotAllowed(request.method)  # DRF's response carries ``Allow``
        principal = principal_of(user)
        if principal is None:
            self.message = "console users need staff status to use the API"
            return False
        if not isinstance(view, ScopedView):
            return False
        scope = view.required_scope(request)
        if scope is None:
            return False
        if not principal.has(scope):
            self.message = f"this operation needs the scope {scope!r}"
            return False
        return True


def has_handler(view: Any, method: str) -> bool:
    """Whether the view (a viewset: the route's action map) answers ``method``; HEAD wherever GET is."""
    name = method.lower()
    return name in getattr(view, "http_method_names", ()) and hasattr(view, name)
