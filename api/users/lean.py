"""The users list and its attribute search through the lean door (``api/lean.py``).

A search page through the full stack cost ~7 ms of web CPU, most of it not the search: the ORM's
tenant read, model instances, a ``json.loads`` per user's attribute document, a datetime and DRF's
``DateTimeField`` per timestamp, and ``json.dumps`` of the page (docs/performance.md, "Attribute
search"). Here a Bearer key's ``GET …/users/`` is answered with the full stack's own parts, minus
that cost:

* the tenant (id and ``schema_version``) from one prepared statement among the key's tenants;
* the filters and the search compiled by the same code as the view's (``users.filters``), the page
  read and cut by the same cursor pagination (``core.api.pagination``);
* the page's text made by PostgreSQL: the id, the attribute document as text, and each timestamp as
  DRF writes it (``…T…Z``) and as the cursor writes it (``str(datetime)``);
* the release policy applied by ``api.release.released``, as the view applies it;
* the body written by orjson (the view's ``JSONRenderer`` writes the same bytes, escaping U+2028 and
  U+2029; where a value would not round-trip identically through orjson — an integer beyond 64
  bits, a float below 1e-4 that Python writes with an exponent — the page is written by
  ``JSONRenderer`` itself).

What this door answers is the full stack's answer byte for byte, headers included
(``tests/test_user_list_door.py`` asks both). It takes a GET whose parameters are ``q``, ``attr.*``,
``page_size``, ``cursor``, ``status`` and ``external_id`` (each but ``q`` and ``attr.*`` once), in
UTC (``TIME_ZONE``), answered as JSON; anything else — ``ordering``, an ``Accept`` the view would
negotiate, a parameter the view would refuse before the search — goes to the full stack before
anything is counted. A bad search or an unknown tenant is answered here, as the full stack
answers them; a bad cursor goes to the full stack.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import orjson
from django.conf import settings
from django.db import connection
from django.db.models import TextField
from django.db.models.expressions import RawSQL
from django.http import HttpRequest, HttpResponse
from rest_framework.exceptions import APIException
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request

from access import scopes as S
from access.principals import Principal
from api.lean import FALL_THROUGH, LeanRoute
from api.release import released
from attributes.selectors import tenant_schema
from core.api.pagination import CursorPagination
from core.db.base import prepared_cursor
from core.errors import NotFound
from users.filters import ATTR_PREFIX, attribute_search, searchable_definitions
from users.models import User

USERS = r"^/api/v1/tenants/(?P<tenant>[^/]+)/users/$"
SAMPLE = "/api/v1/tenants/t/users/"
ONCE = frozenset({"page_size", "cursor", "status", "external_id"})
JSON_ACCEPTS = frozenset({"", "*/*", "application/json"})  # what the view's one renderer answers as is
STATUSES = frozenset(User.Status.values)

TENANT = """SELECT id, schema_version FROM tenants_tenant
WHERE {column} = %s AND deleted_at IS NULL AND (%s OR id = ANY(%s::uuid[]))"""
TABLE = User._meta.db_table


def _stamp(column: str) -> RawSQL:
    """The column's instant in UTC as ``YYYY-MM-DD HH:MM:SS[.ffffff]``: Python's ``str(datetime)``
    without its ``+00:00``, and DRF's ``isoformat()`` with a space for the ``T``."""
    at = f'("{TABLE}"."{column}" AT TIME ZONE \'UTC\')'
    text = f"to_char({at}, 'YYYY-MM-DD HH24:MI:SS') || CASE to_char({at}, 'US') WHEN '000000' THEN '' ELSE to_char({at}, '.US') END"
    return RawSQL(text, (), output_field=TextField())


TEXT = {
    "lean_id": RawSQL(f'"{TABLE}"."id"::text', (), output_field=TextField()),
    "lean_attributes": RawSQL(f'"{TABLE}"."attributes"::text', (), output_field=TextField()),
    "lean_created": _stamp("created_at"),
    "lean_updated": _stamp("updated_at"),
}
COLUMNS = ("lean_id", "external_id", "email", "display_name", "status", "lean_attributes", "version")
# Where orjson and the view's json.dumps write a number differently: floats below 1e-4 (Python: 1e-05,
# orjson: 0.00001 or 1e-7), and integers beyond 64 bits, which orjson reads as floats (then written with
# an exponent). A string holding such text only costs the page the view's slower writer.
EXPONENT = re.compile(rb"e[-+][0-9]")


class TextCursorPagination(CursorPagination):
    """The users list's pagination over the page's text columns: a row's position is ``str()`` of its
    ``created_at``, as the view's rows give it, written by PostgreSQL."""

    def _get_position_from_instance(self, instance: Any, ordering: Any) -> str:
        return instance["lean_created"] + "+00:00"


def accepts(request: HttpRequest) -> bool:
    """The parameters and the answer this door serves as the view would; False: the full stack."""
    if request.META.get("HTTP_ACCEPT", "") not in JSON_ACCEPTS or settings.TIME_ZONE != "UTC":
        return False
    for name, values in request.GET.lists():
        if name in ONCE:
            if len(values) != 1:
                return False
        elif name != "q" and not name.startswith(ATTR_PREFIX):
            return False
    status = request.GET.get("status", "")
    size = request.GET.get("page_size", "1")
    return (status == "" or status in STATUSES) and size.isascii() and size.isdigit() and int(size) >= 1


def _tenant(principal: Principal, ref: str) -> tuple[uuid.UUID, int]:
    """The id and schema version of the tenant ``ref`` (id or slug) among the principal's live ones."""
    try:
        column, value = "id", str(uuid.UUID(ref))
    except ValueError:
        column, value = "slug", ref
    reach = principal.tenant_ids
    with prepared_cursor(connection) as cursor:
        cursor.execute(TENANT.format(column=column), [value, reach is None, [str(t) for t in reach or ()]])
        found = cursor.fetchone()
    if found is None:
        raise NotFound("no such tenant")  # as tenant_get
    return found[0], found[1]


def users_page(request: HttpRequest, principal: Principal, kwargs: dict[str, str], prefetched: list[Any]) -> Any:
    tenant_id, schema_version = _tenant(principal, kwargs["tenant"])
    params = request.GET
    found = User.objects.filter(tenant_id=tenant_id)
    if params.get("status"):
        found = found.filter(status=params["status"])
    if params.get("external_id"):
        found = found.filter(external_id=params["external_id"])
    wanted = attribute_search(params, searchable_definitions(tenant_id, schema_version, principal.release))
    if wanted is not None:
        found = found.filter(wanted)
    paginator = TextCursorPagination()
    try:
        page = paginator.paginate_queryset(found.annotate(**TEXT).values(*COLUMNS, *TEXT), Request(request))
    except APIException:
        return FALL_THROUGH  # a bad cursor: the full stack's 400
    rows = page or []
    texts = [row["lean_attributes"] for row in rows]
    documents, exact = _documents(texts)
    results = [
        {
            "id": row["lean_id"],
            "external_id": row["external_id"],
            "email": row["email"],
            "display_name": row["display_name"],
            "status": row["status"],
            "attributes": document,
            "version": row["version"],
            "created_at": _iso(row["lean_created"]),
            "updated_at": _iso(row["lean_updated"]),
        }
        for row, document in zip(rows, documents, strict=True)
    ]
    pii = tenant_schema(tenant_id=tenant_id, schema_version=schema_version).pii
    body = {
        "next": paginator.get_next_link(),
        "previous": paginator.get_previous_link(),
        "results": released(principal, tenant_id, results, pii=pii),
    }
    if exact:
        content = JSONRenderer().render(body)
    else:
        content = orjson.dumps(body).replace(b"\xe2\x80\xa8", b"\\u2028").replace(b"\xe2\x80\xa9", b"\\u2029")
    return HttpResponse(content, content_type="application/json")


def _documents(texts: list[str]) -> tuple[list[Any], bool]:
    """The attribute documents, read by orjson; read as the view reads them (``json.loads``, and the
    page then written by ``JSONRenderer``: True) where orjson would write a value differently."""
    try:
        documents = [orjson.loads(text) for text in texts]
    except orjson.JSONDecodeError:  # a number beyond a double (PostgreSQL's numeric is unbounded)
        return [json.loads(text) for text in texts], True
    probe = orjson.dumps(documents)
    if b"0.0000" in probe or EXPONENT.search(probe) is not None:
        return [json.loads(text) for text in texts], True
    return documents, False


def _iso(stamp: str) -> str:
    """DRF's ``DateTimeField`` in UTC: ``isoformat()`` with ``Z`` for ``+00:00``."""
    return f"{stamp[:10]}T{stamp[11:]}Z"


ROUTES = [
    LeanRoute(
        USERS,
        frozenset({"GET"}),
        S.DIRECTORY_READ,
        SAMPLE,
        users_page,
        accepts=accepts,
        throttle_scope="principal",  # the REST views' rate (API_THROTTLE_RATE), not the PIP's
    )
]
