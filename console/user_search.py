"""The users changelist's search box: the API's attribute expressions (docs/search.md) or plain text.

A search term that reads as an expression (``clearance ge 3 AND NOT contractor eq true``) is compiled
against the definitions of the tenant chosen in the tenant filter (or the only tenant the console
user administers); anything else is the usual text search over external id, e-mail and name.
"""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from attributes.models import AttributeDefinition
from attributes.query import QueryError, parse_expression
from attributes.search import OPERATORS_BY_TYPE, Compiler
from attributes.selectors import definitions_for
from console.support import administered_tenant_ids
from core.errors import ValidationFailed

TENANT_PARAM = "tenant__id__exact"
PLAIN_HELP = "External id, e-mail or name; or, with a tenant chosen, an attribute expression: clearance ge 3 AND …"


def searched_tenant_id(request: HttpRequest) -> uuid.UUID | None:
    """The tenant whose definitions an expression is read with: the filter's, else the only administered one."""
    raw = request.GET.get(TENANT_PARAM, "")
    try:
        return uuid.UUID(raw)
    except ValueError:
        pass
    tenant_ids = administered_tenant_ids(request)
    return next(iter(tenant_ids)) if tenant_ids is not None and len(tenant_ids) == 1 else None


def _definitions(request: HttpRequest) -> list[AttributeDefinition]:
    tenant_id = searched_tenant_id(request)
    if tenant_id is None:
        return []
    return definitions_for(tenant_id=tenant_id, target=AttributeDefinition.Target.USER)


def expression_results(request: HttpRequest, queryset: QuerySet, term: str) -> QuerySet | None:
    """The users an attribute expression selects, or ``None`` when ``term`` is not an expression."""
    try:
        tree = parse_expression(term)
    except QueryError:
        return None
    tenant_id = searched_tenant_id(request)
    if tenant_id is None:
        messages.warning(request, "Choose a tenant (filter on the right) to search by attribute expression.")
        return queryset.none()
    try:
        wanted = Compiler(_definitions(request)).compile(tree, "/q")
    except ValidationFailed as error:
        messages.error(request, f"Search: {error.errors[0].detail}")
        return queryset.none()
    return queryset.filter(tenant_id=tenant_id).filter(wanted)


def search_help(request: HttpRequest) -> str:
    """Under the search box: the chosen tenant's keys, each with the operators its type takes."""
    definitions = _definitions(request)
    if not definitions:
        return PLAIN_HELP
    rows = format_html_join(
        "",
        "<li><code>{}</code> ({}): {}</li>",
        ((d.key, d.type, " ".join(sorted(OPERATORS_BY_TYPE[d.type]))) for d in definitions),
    )
    return format_html(
        "External id, e-mail or name; or an expression such as <code>{}</code> "
        "(AND, OR, NOT, parentheses; values in double quotes when they hold spaces). Keys of this tenant:"
        '<ul id="search-keys">{}</ul>',
        f"{definitions[0].key} exists",
        rows,
    )
