"""The identity providers' existence check, ``GET …/Users?filter=userName eq "…"``, through the lean
door (``api/lean.py``; the route is wired in ``iam_project/lean_routes.py``).

Entra and Okta send it before every create, so it is the SCIM request that comes most often. The
lean door answers it without the session, CSRF, messages and DRF around the view (the key and the
throttle as for the PIP); the answer is the full stack's, byte for byte (``UserStore.listing``,
rendered as DRF's ``JSONRenderer`` renders). Anything else — another filter, an ``Accept`` that asks
for ``application/json``, a body — is left to the full stack before anything is counted, and an
error is answered in SCIM's form as the full stack would.
"""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, HttpResponse

from access.principals import Principal
from scim.base import SCIM_JSON
from scim.errors import as_scim_error, error_body
from scim.filter import BadFilter, Compare, parse_filter
from scim.listing import list_query
from scim.schemas import USER
from scim.user_store import UserStore
from tenants.selectors import tenant_get

USERS = r"^/scim/v2/tenants/(?P<tenant>[^/]+)/Users$"
SAMPLE = "/scim/v2/tenants/t/Users"


def accepts(request: HttpRequest) -> bool:
    """A ``userName eq "<string>"`` filter, answered as ``application/scim+json``, and nothing else."""
    accept = request.META.get("HTTP_ACCEPT", "")
    if accept not in ("", "*/*", SCIM_JSON):
        return False
    text = request.GET.get("filter")
    if text is None:
        return False
    try:
        node = parse_filter(text)
    except BadFilter:
        return False  # the full stack's 400
    return (
        isinstance(node, Compare)
        and node.op == "eq"
        and isinstance(node.value, str)
        and node.path.attr.lower() == "username"
        and node.path.sub is None
        and (node.path.uri is None or node.path.uri.lower() == USER.lower())
    )


def _render(body: Any, status: int) -> HttpResponse:
    # As DRF's JSONRenderer writes it (compact, UTF-8), so that both doors answer the same bytes.
    content = json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    response = HttpResponse(content, status=status, content_type=SCIM_JSON)
    response["Vary"] = "Accept"
    return response


def users_by_user_name(
    request: HttpRequest, principal: Principal, kwargs: dict[str, str], prefetched: list[Any]
) -> HttpResponse:
    try:
        tenant = tenant_get(ref=kwargs["tenant"], queryset=principal.tenants())
        base = request.build_absolute_uri(f"/scim/v2/tenants/{kwargs['tenant']}")
        return _render(UserStore(tenant, base).listing(list_query(request.GET)), 200)
    except Exception as exc:
        error = as_scim_error(exc)
        if error is None:
            raise
        return _render(error_body(error.status, error.detail, error.scim_type), error.status)
