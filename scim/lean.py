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
import uuid
from typing import Any

from django.db import connection
from django.http import HttpRequest, HttpResponse

from access.principals import Principal
from core.db.base import prepared_cursor
from groups.selectors import DIRECT_GROUPS_JSON
from scim.base import SCIM_JSON
from scim.errors import as_scim_error, error_body
from scim.filter import BadFilter, Compare, parse_filter
from scim.listing import ListQuery, list_query, list_response, projector
from scim.schemas import USER
from scim.user_store import DEPROVISIONED, UserStore
from scim.users import user_resource
from tenants.selectors import tenant_get
from users.models import User

USERS = r"^/scim/v2/tenants/(?P<tenant>[^/]+)/Users$"
SAMPLE = "/scim/v2/tenants/t/Users"


def _user_name(request: HttpRequest) -> str | None:
    """The userName of a ``userName eq "<string>"`` filter, else None."""
    text = request.GET.get("filter")
    if text is None:
        return None
    try:
        node = parse_filter(text)
    except BadFilter:
        return None  # the full stack's 400
    if (
        isinstance(node, Compare)
        and node.op == "eq"
        and isinstance(node.value, str)
        and node.path.attr.lower() == "username"
        and node.path.sub is None
        and (node.path.uri is None or node.path.uri.lower() == USER.lower())
    ):
        return node.value
    return None


def accepts(request: HttpRequest) -> bool:
    """A ``userName eq "<string>"`` filter on the first page, answered as ``application/scim+json``."""
    if request.META.get("HTTP_ACCEPT", "") not in ("", "*/*", SCIM_JSON):
        return False
    if request.GET.get("startIndex", "1") != "1" or "sortBy" in request.GET or "sortOrder" in request.GET:
        return False
    return _user_name(request) is not None


COLUMNS = (
    "id",
    "external_id",
    "display_name",
    "status",
    "attributes",
    "profile",
    "version",
    "created_at",
    "updated_at",
)
# One statement: the tenant (among the key's, not deleted) and its users of that userName with their
# direct groups; a tenant without such users is one row of NULLs, an unknown tenant no row at all.
LOOKUP = f"""
SELECT t.id, {", ".join(f"u.{column}" for column in COLUMNS)}, u.direct_groups
FROM tenants_tenant t LEFT JOIN LATERAL (
    SELECT {", ".join(f'"users_user".{column}' for column in COLUMNS)}, {DIRECT_GROUPS_JSON} AS direct_groups
    FROM users_user WHERE "users_user".tenant_id = t.id AND upper("users_user".external_id::text) = upper(%s)
        AND NOT ("users_user".profile ? '{DEPROVISIONED}')
    ORDER BY "users_user".created_at, "users_user".id LIMIT %s
) u ON true
WHERE t.{{column}} = %s AND t.deleted_at IS NULL AND (%s OR t.id = ANY(%s::uuid[]))
"""


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _lookup(principal: Principal, ref: str, user_name: str, query: ListQuery, base: str) -> dict[str, Any] | None:
    """The list answer from :data:`LOOKUP`; None when the store must answer (no tenant: its 404; a full
    page: its COUNT)."""
    try:
        column, value = "id", str(uuid.UUID(ref))
    except ValueError:
        column, value = "slug", ref
    reach = principal.tenant_ids
    with prepared_cursor(connection) as cursor:  # planned once per connection, as the PIP's lookups
        cursor.execute(LOOKUP.format(column=column), [user_name, query.count, value, reach is None, list(reach or ())])
        rows = cursor.fetchall()
    if not rows or len(rows) >= query.count:
        return None
    users = []
    for row in rows:
        if row[1] is None:
            continue  # the tenant, without such a user
        fields = dict(zip(COLUMNS, row[1:-1], strict=True))
        fields["attributes"], fields["profile"] = _json(fields["attributes"]), _json(fields["profile"])
        user = User(tenant_id=row[0], **fields)
        users.append(user_resource(user, base, _json(row[-1])))
    project = projector(query, USER, UserStore.extensions)
    return list_response(len(users), query, [project(user) for user in users])


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
        base = request.build_absolute_uri(f"/scim/v2/tenants/{kwargs['tenant']}")
        query = list_query(request.GET)
        user_name = _user_name(request)
        if query.count > 0 and user_name is not None:
            found = _lookup(principal, kwargs["tenant"], user_name, query, base)
            if found is not None:
                return _render(found, 200)
        tenant = tenant_get(ref=kwargs["tenant"], queryset=principal.tenants())
        return _render(UserStore(tenant, base).listing(query), 200)
    except Exception as exc:
        error = as_scim_error(exc)
        if error is None:
            raise
        return _render(error_body(error.status, error.detail, error.scim_type), error.status)
