"""List filters for users: ``status``, ``external_id`` and ``attr.<key>=<value>``."""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import QuerySet
from rest_framework.exceptions import ValidationError
from rest_framework.filters import BaseFilterBackend
from rest_framework.request import Request

from attributes.models import AttributeDefinition
from attributes.selectors import definitions_for
from attributes.validation import validate_value
from users.models import User

Type = AttributeDefinition.Type
ATTR_PREFIX = "attr."


class UserFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=User.Status.choices)
    external_id = django_filters.CharFilter()

    class Meta:
        model = User
        fields = ["status", "external_id"]


def coerce(definition: AttributeDefinition, raw: str) -> object:
    """Turn a query-string value into the attribute's JSON type, or raise a 400 naming the rule."""
    pointer = f"{ATTR_PREFIX}{definition.key}"
    value: object = raw
    try:
        if definition.type == Type.INTEGER:
            value = int(raw)
        elif definition.type == Type.NUMBER:
            value = float(raw)
        elif definition.type == Type.BOOLEAN:
            if raw not in ("true", "false"):
                raise ValueError
            value = raw == "true"
    except ValueError:
        raise ValidationError({pointer: [f"not a valid {definition.type}"]}) from None
    if definition.type == Type.STRING_LIST:
        return [raw]  # list attributes match when they contain the value
    _, errors = validate_value(definition, value, pointer)
    type_errors = [e for e in errors if e.rule == "type"]
    if type_errors:
        raise ValidationError({pointer: [type_errors[0].detail]})
    return value


class AttributeFilterBackend(BaseFilterBackend):
    """``?attr.department=eng&attr.level=3``: JSONB containment, served by the GIN index."""

    def filter_queryset(
        self, request: Request, queryset: QuerySet, view: Any
    ) -> QuerySet:  # view: a TenantScopedViewSet
        wanted = {
            key[len(ATTR_PREFIX) :]: value for key, value in request.query_params.items() if key.startswith(ATTR_PREFIX)
        }
        if not wanted:
            return queryset
        definitions = {
            d.key: d for d in definitions_for(tenant_id=view.tenant.id, target=AttributeDefinition.Target.USER)
        }
        contains = {}
        for key, raw in wanted.items():
            definition = definitions.get(key)
            if definition is None:
                raise ValidationError({f"{ATTR_PREFIX}{key}": ["no such user attribute in this tenant"]})
            contains[key] = coerce(definition, raw)  # type: ignore[arg-type]  # django-stubs: a QueryDict value may be a list; a parsed query string holds strings
        return queryset.filter(attributes__contains=contains)
