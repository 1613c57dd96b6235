"""Reads of groups and their members."""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import QuerySet

from core.db.replicas import read_connection
from core.errors import NotFound
from groups.models import Group, Membership


def groups_of(*, tenant: Any) -> QuerySet[Group]:
    return Group.objects.filter(tenant=tenant)


def group_get(*, tenant: Any, group_id: str) -> Group:
    try:
        return Group.objects.get(tenant=tenant, pk=uuid.UUID(str(group_id)))
    except (ValueError, Group.DoesNotExist):
        raise NotFound("no such group in this tenant") from None


def members_of(*, group: Group) -> QuerySet[Membership]:
    """The group's direct members, newest first (for cursor pages), users and groups alike."""
    return Membership.objects.filter(group=group).select_related("user", "child")


def member_row(membership: Membership) -> dict[str, Any]:
    if membership.user is not None:
        return {"type": "user", "id": str(membership.user_id), "external_id": membership.user.external_id}
    assert membership.child is not None, "a membership holds a user or a group"
    return {"type": "group", "id": str(membership.child_id), "key": membership.child.key}


DIRECT_GROUPS = """
    SELECT g.id::text, g.key, g.display_name, g.priority, g.version FROM groups_membership m
    JOIN groups_group g ON g.id = m.group_id WHERE m.user_id = %s ORDER BY g.key
"""


def direct_groups_of_user(user_id: uuid.UUID) -> list[dict[str, Any]]:
    """The groups a user is directly a member of, by key."""
    with read_connection().cursor() as cursor:
        cursor.execute(DIRECT_GROUPS, [user_id])
        names = ("id", "key", "display_name", "priority", "version")
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
