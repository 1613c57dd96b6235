"""List filters for users: ``status``, ``external_id``, attribute search and ordering by an attribute.

Attribute search (docs/search.md): ``attr.<key>=<value>`` (equality; membership for a list),
``attr.<key>__<op>=<value>`` (any operator; list operands comma-separated), repeated parameters
combined with AND, and ``q=<expression>`` with AND, OR, NOT and parentheses. ``ordering=attr.<key>``
(or ``-attr.<key>``) sorts by an attribute and lists only the users that hold it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import django_filters
from django.db.models import Q, QuerySet
from rest_framework.filters import BaseFilterBackend, OrderingFilter
from rest_framework.request import Request

from access.release import FULL, Release
from attributes.models import AttributeDefinition
from attributes.query import MAX_CONDITIONS, QueryError, parse_expression, parse_parameter
from attributes.search import ORDERABLE_TYPES, Compiler, query_error, sort_expression
from attributes.selectors import tenant_schema
from core.errors import FieldError, ValidationFailed
from users.models import User

ATTR_PREFIX = "attr."
SORT_ANNOTATION = "attribute_sort"


class UserFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=User.Status.choices)
    external_id = django_filters.CharFilter()

    class Meta:
        model = User
        fields = ["status", "external_id"]


def _definitions(view: Any) -> list[AttributeDefinition]:
    """The definitions a search of this view's request may name (:func:`searchable_definitions`)."""
    cached = getattr(view, "_user_definitions", None)
    if cached is None:
        principal = getattr(view, "principal", None)
        cached = searchable_definitions(
            view.tenant.id, view.tenant.schema_version, principal.release if principal is not None else FULL
        )
        view._user_definitions = cached
    return cached


def searchable_definitions(tenant_id: UUID, schema_version: int, release: Release) -> list[AttributeDefinition]:
    """The user definitions a search may name: those the caller's release policy lets out
    (access/release.py), so that searching or sorting by a withheld key is the 400 of an unknown key,
    never an oracle. From the tenant's held schema (``tenant_schema``): no query while it holds."""
    schema = tenant_schema(tenant_id=tenant_id, schema_version=schema_version)
    return [
        definition
        for definition in schema.of(AttributeDefinition.Target.USER)
        if release.allows(definition.key, {definition.key} if definition.pii else set())
    ]


def attribute_search(params: Any, definitions: list[AttributeDefinition]) -> Q | None:
    """The Q of a request's ``attr.*`` and ``q`` parameters (AND of all), or ``None`` when there are none."""
    compiler = Compiler(definitions)
    keys = set(compiler.definitions)
    conditions: list[Q] = []
    names = [name for name in params if name.startswith(ATTR_PREFIX)]
    if len(names) > MAX_CONDITIONS:
        raise ValidationFailed([FieldError("/attr", "too_many", f"at most {MAX_CONDITIONS} attribute parameters")])
    for name in names:
        for raw in params.getlist(name):
            pointer = f"/{name}"
            try:
                condition = parse_parameter(name[len(ATTR_PREFIX) :], raw, keys)
            except QueryError as error:
                raise query_error(pointer, error) from None
            conditions.append(compiler.condition(condition, pointer))
    for raw in params.getlist("q"):
        try:
            tree = parse_expression(raw)
        except QueryError as error:
            raise query_error("/q", error) from None
        conditions.append(compiler.compile(tree, "/q"))
    if not conditions:
        return None
    combined = conditions[0]
    for more in conditions[1:]:
        combined &= more
    return combined


class AttributeFilterBackend(BaseFilterBackend):
    """``?attr.level__ge=3&q=department eq eng OR NOT contractor eq true`` over the tenant's definitions."""

    def filter_queryset(self, request: Request, queryset: QuerySet, view: Any) -> QuerySet:
        wanted = attribute_search(request.query_params, _definitions(view))
        return queryset if wanted is None else queryset.filter(wanted)


class AttributeOrderingFilter(OrderingFilter):
    """The view's ``ordering_fields`` plus ``attr.<key>`` / ``-attr.<key>`` for scalar attributes."""

    def get_ordering(self, request: Request, queryset: QuerySet, view: Any) -> Sequence[str] | None:
        raw = request.query_params.get(self.ordering_param, "")
        if raw.lstrip("-").startswith(ATTR_PREFIX):
            return [f"-{SORT_ANNOTATION}" if raw.startswith("-") else SORT_ANNOTATION]
        return super().get_ordering(request, queryset, view)

    def filter_queryset(self, request: Request, queryset: QuerySet, view: Any) -> QuerySet:
        raw = request.query_params.get(self.ordering_param, "")
        if not raw.lstrip("-").startswith(ATTR_PREFIX):
            return super().filter_queryset(request, queryset, view)
        key = raw.lstrip("-")[len(ATTR_PREFIX) :]
        definition = next((d for d in _definitions(view) if d.key == key), None)
        if definition is None or definition.type not in ORDERABLE_TYPES:
            raise ValidationFailed(
                [FieldError("/ordering", "ordering", f"{raw[:80]!r}: not a scalar user attribute of this tenant")]
            )
        expression = sort_expression(definition)
        sorted_by = queryset.annotate(**{SORT_ANNOTATION: expression}).filter(**{f"{SORT_ANNOTATION}__isnull": False})
        return sorted_by.order_by(*(self.get_ordering(request, queryset, view) or ()))
