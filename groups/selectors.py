"""Reads of groups and their members."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from django.db import connection
from django.db.models import JSONField, QuerySet
from django.db.models.expressions import RawSQL

from core.db.lookups import get_by_id
from core.db.replicas import read_connection
from groups.models import Group, Membership


def groups_of(*, tenant: Any) -> QuerySet[Group]:
    return Group.objects.filter(tenant=tenant)


def group_get(*, tenant: Any, group_id: str) -> Group:
    return get_by_id(groups_of(tenant=tenant), group_id, "no such group in this tenant")


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


DIRECT_GROUPS_OF_USERS = """
    SELECT m.user_id, g.id::text, g.key, g.display_name FROM groups_membership m
    JOIN groups_group g ON g.id = m.group_id WHERE m.user_id = ANY(%s) ORDER BY g.key
"""


def _rows_by_owner(
    sql: str, owner_ids: list[uuid.UUID], item: Callable[..., dict[str, Any]]
) -> dict[uuid.UUID, list[dict[str, Any]]]:
    """``sql`` run once for all of ``owner_ids`` (its one parameter): each owner's rows, ``item`` of the
    columns after the first (the owner's id); an owner without rows has an empty list."""
    found: dict[uuid.UUID, list[dict[str, Any]]] = {owner_id: [] for owner_id in owner_ids}
    if not owner_ids:
        return found
    with connection.cursor() as cursor:
        cursor.execute(sql, [list(owner_ids)])
        for owner_id, *columns in cursor.fetchall():
            found.setdefault(owner_id, []).append(item(*columns))
    return found


def direct_groups_of_users(user_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[dict[str, Any]]]:
    """The groups each of ``user_ids`` is directly a member of (id, key, display name), in one query."""
    return _rows_by_owner(
        DIRECT_GROUPS_OF_USERS,
        user_ids,
        lambda group_id, key, display_name: {"id": group_id, "key": key, "display_name": display_name},
    )


MEMBERS_OF_GROUPS = """
    SELECT m.group_id, coalesce(m.user_id, m.child_id)::text, m.user_id IS NOT NULL,
           coalesce(nullif(u.display_name, ''), u.external_id, nullif(c.display_name, ''), c.key)
    FROM groups_membership m LEFT JOIN users_user u ON u.id = m.user_id LEFT JOIN groups_group c ON c.id = m.child_id
    WHERE m.group_id = ANY(%s) ORDER BY m.id
"""


def members_of_groups(group_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[dict[str, Any]]]:
    """The direct members of each of ``group_ids`` (id, kind ``User``/``Group``, a name to show), in one query."""
    return _rows_by_owner(
        MEMBERS_OF_GROUPS,
        group_ids,
        lambda member_id, is_user, display: {
            "id": member_id,
            "kind": "User" if is_user else "Group",
            "display": display,
        },
    )


def member_ids_of(group: Group) -> list[str]:
    """The ids of the group's direct members (users and groups), without loading them."""
    return [
        str(user or child) for user, child in Membership.objects.filter(group=group).values_list("user_id", "child_id")
    ]


DIRECT_GROUPS_JSON = """coalesce((
    SELECT jsonb_agg(jsonb_build_object('id', g.id::text, 'key', g.key, 'display_name', g.display_name) ORDER BY g.key)
    FROM groups_membership m JOIN groups_group g ON g.id = m.group_id WHERE m.user_id = "users_user"."id"
), '[]'::jsonb)"""


def with_direct_groups(users: QuerySet[Any]) -> QuerySet[Any]:
    """``users`` each with ``direct_groups`` (as :func:`direct_groups_of_users` gives them), in the same query."""
    annotated: QuerySet[Any] = users.annotate(direct_groups=RawSQL(DIRECT_GROUPS_JSON, [], output_field=JSONField()))
    return annotated
