"""Per-principal throttling (429 with Retry-After): one bucket per API key or console user."""

from __future__ import annotations

from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from access.principals import principal_of


class PrincipalRateThrottle(SimpleRateThrottle):
    scope = "principal"

    def get_cache_key(self, request: Request, view: object) -> str | None:
        principal = principal_of(request.user) if request.user else None
        if principal is None:
            return None  # refused by authentication/permission anyway
        return self.cache_format % {"scope": self.scope, "ident": f"{principal.kind}:{principal.id}"}

    def allow_request(self, request: Request, view: object) -> bool:
        try:
            return super().allow_request(request, view)
        except Exception:  # noqa: BLE001 - a cache outage must not fail requests: throttling fails open
            return True
