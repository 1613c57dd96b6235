"""The users list and its attribute search through the lean door (``api/lean.py``).

A search page through the full stack cost ~7 ms of web CPU, most of it not the search: the ORM's
tenant read, model instances, a ``json.loads`` per user's attribute document, a datetime and DRF's
``DateTimeField`` per timestamp, and ``json.dumps`` of the page (docs/performance.md, "Attribute
search"). Here a Bearer key's ``GET …/users/`` is answered with the full stack's own parts, minus
that cost:

* the tenant (id and ``schema_version``) from one prepared statement among the key's tenants;
* the search compiled by the same code as the view's (``users.filters.attribute_search`` and the
  ORM), once per tenant schema, release policy and parameters in a process: the next page of a
  search, or the same search again, reuses it;
* the page read by one statement of the view's filters and order, cut by the view's cursor
  pagination (``core.api.pagination``: its cursor checks and DRF's links);
* the page's text made by PostgreSQL: the id, the attribute document as text, and each timestamp
  as DRF writes it (``…T…Z``) and as the cursor writes it (``str(datetime)``);
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
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import orjson
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, QueryDict
from rest_framework.exceptions import APIException
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request

from access import scopes as S
from access.principals import Principal
from access.release import Release
from api.lean import FALL_THROUGH, LeanRoute
from api.release import released
from attributes.selectors import tenant_schema
from core.api.pagination import CursorPagination
from core.db.base import prepared_cursor
from core.db.replicas import read_connection
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


def _stamp(column: str) -> str:
    """The column's instant in UTC as ``YYYY-MM-DD HH:MM:SS[.ffffff]``: Python's ``str(datetime)``
    without its ``+00:00``, and DRF's ``isoformat()`` with a space for the ``T``."""
    at = f'("{TABLE}"."{column}" AT TIME ZONE \'UTC\')'
    return f"to_char({at}, 'YYYY-MM-DD HH24:MI:SS') || CASE to_char({at}, 'US') WHEN '000000' THEN '' ELSE to_char({at}, '.US') END"


# The view's output fields (``UserOutputSerializer``), in its order, as text where Python would build an
# object per value; then the filters and the order of the view's query (``ORDER BY created_at``).
PAGE = f"""SELECT "{TABLE}"."id"::text, "{TABLE}"."external_id", "{TABLE}"."email", "{TABLE}"."display_name",
    "{TABLE}"."status", "{TABLE}"."attributes"::text, "{TABLE}"."version", {_stamp("created_at")},
    {_stamp("updated_at")}
FROM "{TABLE}" WHERE "{TABLE}"."tenant_id" = %s"""
# Where orjson and the view's json.dumps write a number differently: floats below 1e-4 (Python: 1e-05,
# orjson: 0.00001 or 1e-7), and integers beyond 64 bits, which orjson reads as floats (then written with
# an exponent). A string holding such text only costs the page the view's slower writer.
EXPONENT = re.compile(rb"e[-+][0-9]")
SEARCHES_HELD = 512  # compiled searches a process keeps (least recently used dropped first)
_searches: OrderedDict[tuple[Any, ...], tuple[str, tuple[Any, ...]]] = OrderedDict()
_searches_lock = threading.Lock()


class TextCursorPagination(CursorPagination):
    """The view's cursor pagination over this door's rows: a row's position is ``str()`` of its
    ``created_at``, as the view's rows give it (here written by PostgreSQL)."""

    def _get_position_from_instance(self, instance: Any, ordering: Any) -> str:
        return instance[7] + "+00:00"

    def paginate_rows(self, request: Request, fetch: Callable[[bool, str | None, int, int], list[Any]]) -> list[Any]:
        """DRF's ``paginate_queryset`` (the same state, for its ``get_next_link`` and
        ``get_previous_link``), the page read by ``fetch(reverse, position, offset, limit)``."""
        size = self.get_page_size(request)
        assert size is not None, "the list always pages"
        self.request, self.page_size, self.base_url = request, size, request.build_absolute_uri()
        self.ordering = ("-created_at",)  # type: ignore[assignment]  # as get_ordering gives the view's; the stubs say str
        self._model, self._annotations = User, {}  # what decode_cursor checks a position against
        self.cursor = self.decode_cursor(request)
        # DRF decodes a position as text; the stubs type it as an int
        offset, reverse, current = (0, False, None) if self.cursor is None else self.cursor
        position: Any = current
        results = fetch(reverse, position, offset, size + 1)
        self.page = results[:size]
        following: Any = self._get_position_from_instance(results[-1], None) if len(results) > size else None
        if reverse:
            self.page.reverse()
            self.has_next, self.has_previous = position is not None or offset > 0, following is not None
            self.next_position, self.previous_position = position, following
        else:
            self.has_next, self.has_previous = following is not None, position is not None or offset > 0
            self.next_position, self.previous_position = following, position
        return self.page


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
    with prepared_cursor(read_connection()) as cursor:  # a replica's, in a read scope (core.db.replicas)
        cursor.execute(TENANT.format(column=column), [value, reach is None, [str(t) for t in reach or ()]])
        found = cursor.fetchone()
    if found is None:
        raise NotFound("no such tenant")  # as tenant_get
    return found[0], found[1]


def _search(
    params: QueryDict, tenant_id: uuid.UUID, schema_version: int, release: Release
) -> tuple[str, tuple[Any, ...]]:
    """The SQL condition (and its parameters) of the request's ``attr.*`` and ``q`` parameters, as
    ``users.filters.attribute_search`` and the ORM compile it for the view; ``("", ())`` for none.

    A process keeps the compiled condition of a search it has answered, for the same tenant schema
    (the copy ``tenant_schema`` holds, with which keys' indexes are built), release policy and
    parameters: the next page of a search, and a search asked again, skip the ORM.
    """
    schema = tenant_schema(tenant_id=tenant_id, schema_version=schema_version)
    asked = tuple(
        (name, tuple(values)) for name, values in params.lists() if name == "q" or name.startswith(ATTR_PREFIX)
    )
    if not asked:
        return "", ()
    key = (tenant_id, schema.version, schema.read_at, release.fingerprint, asked)
    with _searches_lock:
        held = _searches.get(key)
        if held is not None:
            _searches.move_to_end(key)
            return held
    wanted = attribute_search(params, searchable_definitions(tenant_id, schema_version, release))
    assert wanted is not None, "a search parameter is a condition"
    query = User.objects.filter(wanted).query
    sql, where_params = query.get_compiler(connection=connection).compile(query.where)
    compiled = (f" AND {sql}", tuple(where_params))
    with _searches_lock:
        _searches[key] = compiled
        while len(_searches) > SEARCHES_HELD:
            _searches.popitem(last=False)
    return compiled


def users_page(request: HttpRequest, principal: Principal, kwargs: dict[str, str], prefetched: list[Any]) -> Any:
    tenant_id, schema_version = _tenant(principal, kwargs["tenant"])
    params = request.GET
    where, where_params = _search(params, tenant_id, schema_version, principal.release)
    filters, filter_params = [], []
    for name in ("status", "external_id"):  # the view's filterset: an empty value filters nothing
        if params.get(name):
            filters.append(f' AND "{TABLE}"."{name}" = %s')
            filter_params.append(params[name])

    def fetch(reverse: bool, position: str | None, offset: int, limit: int) -> list[Any]:
        after = ""
        if position is not None:  # as CursorPagination filters: past the position, in the page's direction
            after = f' AND "{TABLE}"."created_at" {">" if reverse else "<"} %s::timestamptz'
        order = "ASC" if reverse else "DESC"
        sql = f'{PAGE}{"".join(filters)}{where}{after} ORDER BY "{TABLE}"."created_at" {order} LIMIT %s OFFSET %s'
        with read_connection().cursor() as cursor:  # a replica, in a read scope
            cursor.execute(
                sql, [tenant_id, *filter_params, *where_params, *([position] if after else []), limit, offset]
            )
            return cursor.fetchall()

    paginator = TextCursorPagination()
    try:
        rows = paginator.paginate_rows(Request(request), fetch)
    except APIException:
        return FALL_THROUGH  # a bad cursor: the full stack's 400
    documents, exact = _documents([row[5] for row in rows])
    results = [
        {
            "id": row[0],
            "external_id": row[1],
            "email": row[2],
            "display_name": row[3],
            "status": row[4],
            "attributes": document,
            "version": row[6],
            "created_at": _iso(row[7]),
            "updated_at": _iso(row[8]),
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
