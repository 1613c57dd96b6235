"""Query parameters of a SCIM list (RFC 7644 §3.4.2): filter, sort, pagination, and the projection
of ``attributes``/``excludedAttributes`` onto each resource.

The filter and the sort run in PostgreSQL (:mod:`scim.query`); the page is ``startIndex`` (1-based)
and ``count`` (at most ``SCIM_MAX_RESULTS``) as ``OFFSET``/``LIMIT``, ``totalResults`` one ``COUNT``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import F, QuerySet

from scim.errors import ScimError, invalid_value
from scim.filter import AttrPath, BadFilter, attr_path
from scim.query import Resolver, filter_condition, sort_expression
from scim.schemas import LIST

ALWAYS = {"id", "schemas"}  # returned whatever ``attributes`` says (RFC 7643 §7, "returned": "always")


@dataclass(frozen=True)
class ListQuery:
    filter: str | None
    sort_by: str | None
    descending: bool
    start: int
    count: int
    attributes: list[str]
    excluded: list[str]


def _positive(value: str | None, name: str, default: int, minimum: int) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise invalid_value(f"{name} is an integer") from None
    return max(number, minimum)


def _names(value: Any) -> list[str]:
    if value is None:
        return []
    return [name.strip() for name in str(value).split(",") if name.strip()]


def list_query(params: Mapping[str, Any]) -> ListQuery:
    limit = settings.SCIM_MAX_RESULTS
    order = (params.get("sortOrder") or "ascending").lower()
    if order not in ("ascending", "descending"):
        raise invalid_value("sortOrder is ascending or descending")
    return ListQuery(
        filter=params.get("filter") or None,
        sort_by=params.get("sortBy") or None,
        descending=order == "descending",
        start=_positive(params.get("startIndex"), "startIndex", 1, 1),
        count=min(_positive(params.get("count"), "count", limit, 0), limit),
        attributes=_names(params.get("attributes")),
        excluded=_names(params.get("excludedAttributes")),
    )


def page(
    queryset: QuerySet[Any],
    query: ListQuery,
    resolve: Resolver,
    annotate: Callable[[QuerySet[Any]], QuerySet[Any]] | None = None,
) -> tuple[int, list[Any]]:
    """(totalResults, the page's rows) of ``queryset`` filtered and sorted in SQL; the ``COUNT`` only when
    the page is full or past the end (``userName eq`` is then one query). ``annotate`` adds to the page's
    query only (what each row shows, not what the COUNT needs)."""
    if query.filter is not None:
        queryset = queryset.filter(filter_condition(query.filter, resolve))
    if query.count == 0:
        return queryset.count(), []
    if query.sort_by is not None:
        try:
            expression = sort_expression(attr_path(query.sort_by), resolve)
        except BadFilter as exc:
            raise invalid_value(f"sortBy: {exc}") from None
        ordered = expression.desc(nulls_last=True) if query.descending else expression.asc(nulls_last=True)
        queryset = queryset.order_by(ordered, "id")
    else:
        queryset = queryset.order_by(F("created_at").asc(), "id")
    offset = query.start - 1
    rows = list((annotate(queryset) if annotate else queryset)[offset : offset + query.count])
    if (rows or offset == 0) and len(rows) < query.count:  # the last page: the total is known without a COUNT
        return offset + len(rows), rows
    return queryset.count(), rows


def list_response(total: int, query: ListQuery, resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "schemas": [LIST],
        "totalResults": total,
        "startIndex": query.start,
        "itemsPerPage": len(resources),
        "Resources": resources,
    }


def _locate(path: AttrPath, extensions: tuple[str, ...]) -> tuple[str | None, str, str | None]:
    """(extension URN or None, attribute, sub-attribute) of a requested attribute, lower-cased."""
    if path.uri is None:
        return None, path.attr.lower(), (path.sub or "").lower() or None
    whole = f"{path.uri}:{path.attr}".lower()
    if whole in {urn.lower() for urn in extensions}:
        return whole, "", None
    return path.uri.lower(), path.attr.lower(), (path.sub or "").lower() or None


def projector(query: ListQuery, core: str, extensions: tuple[str, ...]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The function that cuts a resource down to ``attributes`` or without ``excludedAttributes``."""
    if query.attributes and query.excluded:
        raise ScimError(400, "attributes and excludedAttributes exclude each other", "invalidValue")
    try:
        wanted = [_locate(attr_path(name), extensions) for name in query.attributes or query.excluded]
    except BadFilter as exc:
        raise invalid_value(str(exc)) from None
    wanted = [(None if uri == core.lower() else uri, attr, sub) for uri, attr, sub in wanted]
    if not wanted:
        return lambda resource: resource

    def hit(uri: str | None, key: str, sub: str | None = None) -> str:
        """'all' when (uri, key[, sub]) is named whole, 'part' when some sub-attribute is, else ''."""
        for w_uri, w_attr, w_sub in wanted:
            if w_uri == uri and w_attr == "" and uri is not None:
                return "all"
            if w_uri == uri and w_attr == key.lower():
                if w_sub is None or (sub is not None and w_sub == sub.lower()):
                    return "all"
                if sub is None:
                    return "part"
        return ""

    def cut(container: dict[str, Any], uri: str | None, keep: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in container.items():
            if uri is None and key.lower() in {urn.lower() for urn in extensions} and isinstance(value, dict):
                inner = cut(value, key.lower(), keep) if hit(key.lower(), "") != "all" else (value if keep else {})
                if inner:
                    out[key] = inner
                continue
            if uri is None and key in ALWAYS:
                out[key] = value
                continue
            found = hit(uri, key)
            if found == "part" and isinstance(value, dict | list):

                def named(sub: str, key: str = key) -> bool:
                    return hit(uri, key, sub) == "all"

                out_value = _sub_cut(value, named, keep)
                if out_value:
                    out[key] = out_value
            elif (found == "all") == keep:
                out[key] = value
        return out

    keep = bool(query.attributes)
    return lambda resource: cut(copy.deepcopy(resource), None, keep)


def _sub_cut(value: Any, named: Callable[[str], bool], keep: bool) -> Any:
    if isinstance(value, list):
        return [cut for item in value if (cut := _sub_cut(item, named, keep))]
    if isinstance(value, dict):
        return {key: item for key, item in value.items() if named(key) == keep}
    return value
