"""List filters for groups: ``key``, ``external_id``, ``member`` (a user or group id: its direct groups)."""

from __future__ import annotations

import django_filters
from django.db.models import Q, QuerySet

from groups.models import Group


class GroupFilter(django_filters.FilterSet):
    key = django_filters.CharFilter()
    external_id = django_filters.CharFilter()
    member = django_filters.UUIDFilter(method="filter_member", label="member")

    class Meta:
        model = Group
        fields = ["key", "external_id", "member"]

    def filter_member(self, queryset: QuerySet[Group], name: str, value: object) -> QuerySet[Group]:
        return queryset.filter(Q(memberships__user_id=value) | Q(memberships__child_id=value)).distinct()
