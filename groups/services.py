"""Writes to groups and their memberships: the change and its events in one transaction.

Nesting changes (a group added to a group) are serialised per tenant by a transaction-level
advisory lock taken before any row lock, so two requests that would together close a cycle cannot
both pass the check: the second one reads the first one's committed edge. Row locks follow one
order: the member groups (``FOR KEY SHARE``, by id), then the group being changed (``FOR UPDATE``);
member users are locked by the insert's own foreign key checks.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any, Unpack
from uuid import UUID

from django.conf import settings
from django.db import IntegrityError, connection, transaction

from attributes.holder_updates import holder_updated
from attributes.selectors import definitions_for
from attributes.validation import validate_attributes
from core.db.locking import lock_for_write, locked_for_write
from core.errors import Conflict, FieldError, ValidationFailed
from core.field_updates import UpdateOptions, assign_changed, replacement, update_of
from core.guards import domain_write
from groups.models import KEY_PATTERN, Group
from groups.nesting import check_nesting, nesting_lock
from outbox.changes import Aggregate, Change, record_changes, row_state


class GroupChanges(UpdateOptions, total=False):
    """What ``group_update`` may change."""

    key: str
    display_name: str
    external_id: str | None
    priority: int


PRIORITY_RANGE = (-(2**31), 2**31 - 1)


#: A group's fields in its events, after ``id`` and ``tenant_id``.
EVENT_FIELDS = ("key", "display_name", "external_id", "priority", "attributes", "version")


def group_data(group: Group) -> dict[str, Any]:
    """The state of a group as events carry it (members are not part of it: see the members events)."""
    return row_state(group, EVENT_FIELDS)


GROUPS = Aggregate[Group]("Group", group_data, lambda group: group.key)


def _check_fields(group: Group) -> None:
    errors = []
    if not isinstance(group.key, str) or not re.match(KEY_PATTERN, group.key):
        errors.append(FieldError("/key", "key", "1-64 of a-z, 0-9 and '-', not starting or ending with '-'"))
    if not isinstance(group.display_name, str) or len(group.display_name) > 200:
        errors.append(FieldError("/display_name", "max_length", "at most 200 characters"))
    elif not group.display_name.isprintable():
        errors.append(FieldError("/display_name", "printable", "printable characters only"))
    ext = group.external_id
    if ext is not None and (not isinstance(ext, str) or not 1 <= len(ext) <= 255 or not ext.isprintable()):
        errors.append(FieldError("/external_id", "length", "null, or 1-255 printable characters"))
    priority = group.priority
    if (
        isinstance(priority, bool)
        or not isinstance(priority, int)
        or not PRIORITY_RANGE[0] <= priority <= PRIORITY_RANGE[1]
    ):
        errors.append(FieldError("/priority", "type", "an integer between -2147483648 and 2147483647"))
    if errors:
        raise ValidationFailed(errors)


def _validated_attributes(tenant_id: UUID, values: Any) -> dict[str, Any]:
    return validate_attributes(definitions_for(tenant_id=tenant_id, target="group"), values)


def _conflict(group: Group) -> str:
    """What a 409 says when ``group``'s key or external id is taken."""
    return f"a group with key {group.key!r} or external_id {group.external_id!r} already exists in this tenant"


def group_create(
    *,
    tenant: Any,
    key: str,
    display_name: str = "",
    external_id: str | None = None,
    priority: int = 0,
    attributes: dict[str, Any] | None = None,
) -> Group:
    group = Group(tenant=tenant, key=key, display_name=display_name, external_id=external_id, priority=priority)
    _check_fields(group)
    group.attributes = _validated_attributes(tenant.pk, attributes or {})
    return GROUPS.insert(group, _conflict(group))


def group_update(*, group: Group, **changes: Unpack[GroupChanges]) -> Group:
    """Change fields and/or attributes (replace, or merge with ``None`` removing); one event if changed."""
    update = update_of(changes, GroupChanges)
    with locked_for_write(group, expected_version=update.expected_version) as locked:
        before = group_data(locked)
        changed = assign_changed(locked, update.fields)
        _check_fields(locked)
        conflict = _conflict(locked)
        return holder_updated(GROUPS, locked, before, changed, conflict, update, target="group")


#: What PUT gives a field it omits (``group_replace``).
REPLACE_DEFAULTS: dict[str, Any] = {"display_name": "", "external_id": None, "priority": 0}


def group_replace(
    *, group: Group, expected_version: int | None = None, attributes: dict[str, Any] | None = None, **fields: Any
) -> Group:
    """PUT: the group becomes what is given; an absent field takes its default, absent attributes are removed."""
    return group_update(
        group=group, expected_version=expected_version, **replacement(attributes, fields, REPLACE_DEFAULTS)
    )


def _members_event(group: Group, event: str, users: list[str], groups: list[str]) -> Change:
    """``GroupMembersAdded`` or ``GroupMembersRemoved`` (``event`` without the ``Group``)."""
    return GROUPS.change(group, event, {**row_state(group, ("key", "version")), "users": users, "groups": groups})


def group_delete(*, group: Group, expected_version: int | None = None) -> None:
    """Delete a group with its memberships; each group that contained it gets a ``GroupMembersRemoved``."""
    with transaction.atomic(), domain_write():
        locked = lock_for_write(group, expected_version=expected_version)
        # New memberships of this group wait on its row lock (their foreign key check), so the
        # parents read here are all there will be.
        parents = list(Group.objects.select_for_update().filter(memberships__child=locked).order_by("id"))
        changes = []
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM groups_membership WHERE child_id = %s", [locked.id])
            for parent in parents:
                parent.version += 1
                parent.save(update_fields=["version", "updated_at"])
                changes.append(_members_event(parent, "MembersRemoved", [], [str(locked.id)]))
            cursor.execute("DELETE FROM groups_membership WHERE group_id = %s", [locked.id])
            member_count = cursor.rowcount
        changes.append(GROUPS.removed(locked, members_removed=member_count))
        locked.delete()
        record_changes(changes)


@dataclass(frozen=True)
class MembersChange:
    """What a bulk membership change did: the user and group ids actually added or removed."""

    group: Group
    users: list[str]
    groups: list[str]


def _parse_ids(ids: Any) -> list[UUID]:
    limit = int(getattr(settings, "GROUP_MEMBERS_BULK_MAX", 1000))
    if not isinstance(ids, list) or not ids:
        raise ValidationFailed([FieldError("/ids", "type", "a non-empty list of user or group ids")])
    if len(ids) > limit:
        raise ValidationFailed([FieldError("/ids", "max_items", f"at most {limit} ids per request")])
    parsed, errors = [], []
    for index, value in enumerate(ids):
        try:
            parsed.append(uuid.UUID(value) if isinstance(value, str) and len(value) in (32, 36) else None)
        except ValueError:
            parsed.append(None)
        if parsed[-1] is None:
            errors.append(FieldError(f"/ids/{index}", "type", "a user or group id (a UUID)"))
    if errors:
        raise ValidationFailed(errors)
    return list(dict.fromkeys(uid for uid in parsed if uid is not None))  # duplicates count once, in the order given


MEMBERS_OF_TENANT = """
    SELECT id, false FROM users_user WHERE tenant_id = %s AND id = ANY(%s)
    UNION ALL SELECT id, true FROM groups_group WHERE tenant_id = %s AND id = ANY(%s)
"""


def _unknown(ids: list[UUID], unknown: set[UUID]) -> ValidationFailed:
    return ValidationFailed(
        [
            FieldError(f"/ids/{index}", "unknown", f"no user or group {member} in this tenant")
            for index, member in enumerate(ids)
            if member in unknown
        ]
    )


def _members_of_tenant(tenant_id: UUID, ids: list[UUID]) -> tuple[list[UUID], list[UUID]]:
    """The (user ids, group ids) among ``ids`` in the tenant, in one query; 400 naming every other one.

    An id of another tenant's user or group gets the same answer as one that exists nowhere: the
    answer never tells a caller what another tenant holds.
    """
    with connection.cursor() as cursor:
        cursor.execute(MEMBERS_OF_TENANT, [tenant_id, ids, tenant_id, ids])
        rows = cursor.fetchall()
    users = [member for member, is_group in rows if not is_group]
    groups = [member for member, is_group in rows if is_group]
    unknown = set(ids) - set(users) - set(groups)
    if unknown:
        raise _unknown(ids, unknown)
    return users, groups


def _lock_member_groups(ids: list[UUID], groups: list[UUID]) -> None:
    """``FOR KEY SHARE`` on the member groups, by id (a concurrent delete of one waits, or went first)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM groups_group WHERE id = ANY(%s) ORDER BY id FOR KEY SHARE", [groups])
        gone = set(groups) - {row[0] for row in cursor.fetchall()}
    if gone:
        raise _unknown(ids, gone)


def group_members_add(*, group: Group, ids: Any, expected_version: int | None = None) -> MembersChange:
    """Add up to ``GROUP_MEMBERS_BULK_MAX`` (a setting, default 1,000) users and groups; one
    ``GroupMembersAdded`` if any was new.

    A user deleted while it is being added fails the insert's foreign key check, made immediate for
    that one statement: a 409, never an error at commit.
    """
    wanted = _parse_ids(ids)
    with transaction.atomic(), domain_write():
        users, groups = _members_of_tenant(group.tenant_id, wanted)
        if groups:
            nesting_lock(group.tenant_id)
            _lock_member_groups(wanted, groups)
        locked = lock_for_write(group, expected_version=expected_version)
        if groups:
            check_nesting(locked, groups)
        with connection.cursor() as cursor:
            try:
                with transaction.atomic():
                    cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
                    cursor.execute(
                        "INSERT INTO groups_membership (group_id, user_id, child_id, created_at) "
                        "SELECT %s, m.uid, m.gid, now() FROM unnest(%s::uuid[], %s::uuid[]) AS m(uid, gid) "
                        "ON CONFLICT DO NOTHING RETURNING user_id, child_id",
                        [locked.id, users + [None] * len(groups), [None] * len(users) + groups],
                    )
                    added = cursor.fetchall()
                    cursor.execute("SET CONSTRAINTS ALL DEFERRED")
            except IntegrityError:
                raise Conflict("a member was deleted while it was being added; try again") from None
        return _members_changed(locked, "MembersAdded", added)


def group_members_remove(*, group: Group, ids: Any, expected_version: int | None = None) -> MembersChange:
    """Remove up to ``GROUP_MEMBERS_BULK_MAX`` members; ids of the tenant that are not members are no-ops."""
    wanted = _parse_ids(ids)
    with transaction.atomic(), domain_write():
        users, groups = _members_of_tenant(group.tenant_id, wanted)
        locked = lock_for_write(group, expected_version=expected_version)
        with connection.cursor() as cursor:
            cursor.execute(
                "DELETE FROM groups_membership WHERE group_id = %s AND (user_id = ANY(%s) OR child_id = ANY(%s)) "
                "RETURNING user_id, child_id",
                [locked.id, users, groups],
            )
            removed = cursor.fetchall()
        return _members_changed(locked, "MembersRemoved", removed)


def _members_changed(locked: Group, event: str, rows: list[tuple[Any, Any]]) -> MembersChange:
    users = sorted(str(user) for user, _ in rows if user is not None)
    groups = sorted(str(child) for _, child in rows if child is not None)
    if rows:
        locked.version += 1
        locked.save(update_fields=["version", "updated_at"])
        record_changes([_members_event(locked, event, users, groups)])
    return MembersChange(locked, users, groups)
