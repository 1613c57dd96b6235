"""Export and import of a tenant's groups and memberships as JSON Lines, one group a line.

    {"key": "backend", "display_name": "", "external_id": null, "priority": 0, "attributes": {…},
     "members": {"users": ["<external id>", …], "groups": ["<group key>", …]}}

Members are named by what survives a move between deployments (users' external ids, groups' keys),
never by ids. An import is atomic: the file is read and checked first, then every group is created or
updated by key and its members made exactly the file's, through ``groups.services`` (validation,
nesting rules and events as for the API) in one transaction; the first refusal rolls it all back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from django.db import transaction

from core.errors import DomainError, FieldError, ValidationFailed
from groups import services
from groups.models import Group, Membership
from imports.transfer import FileFormatError, _jsonl_rows
from users.models import User
from users.services import WriteCounts

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

GROUP_FIELDS = ("display_name", "external_id", "priority")
LINE_FIELDS = {"key", *GROUP_FIELDS, "attributes", "members"}
CHUNK = 1000


def groups_export(*, tenant: Any, out: SupportsWrite[str]) -> int:
    count = 0
    for group in Group.objects.filter(tenant=tenant).order_by("key").iterator():
        members = Membership.objects.filter(group=group)
        users = sorted(members.filter(user__isnull=False).values_list("user__external_id", flat=True))
        groups = sorted(members.filter(child__isnull=False).values_list("child__key", flat=True))
        line = {"key": group.key, **{name: getattr(group, name) for name in GROUP_FIELDS},
                "attributes": group.attributes, "members": {"users": users, "groups": groups}}  # fmt: skip
        out.write(json.dumps(line, ensure_ascii=False) + "\n")
        count += 1
    return count


@dataclass
class GroupsImportReport(WriteCounts):
    members_added: int = 0
    members_removed: int = 0


def _check(number: int, row: dict[str, Any]) -> dict[str, Any]:
    unknown = set(row) - LINE_FIELDS
    if unknown or not isinstance(row.get("key"), str):
        raise FileFormatError(number, f"a line is an object with a string key and only {sorted(LINE_FIELDS)}")
    members = row.get("members", {})
    if not isinstance(members, dict) or set(members) - {"users", "groups"}:
        raise FileFormatError(number, 'members is {"users": [external ids], "groups": [keys]}')
    for kind in ("users", "groups"):
        if not isinstance(members.get(kind, []), list) or not all(isinstance(v, str) for v in members.get(kind, [])):
            raise FileFormatError(number, f"members.{kind} is a list of strings")
    return row


def groups_import(*, tenant: Any, stream: IO[bytes]) -> GroupsImportReport:
    """Raises :class:`FileFormatError` (nothing written) or a line's :class:`DomainError` (rolled back)."""
    rows = [(number, _check(number, row)) for number, row in _jsonl_rows(stream)]
    report = GroupsImportReport()
    with transaction.atomic():
        by_key = {group.key: group for group in Group.objects.filter(tenant=tenant)}
        for number, row in rows:
            fields = {name: row[name] for name in GROUP_FIELDS if name in row}
            try:
                if row["key"] in by_key:
                    before = by_key[row["key"]].version
                    group = services.group_update(group=by_key[row["key"]], attributes=row.get("attributes"), **fields)
                    report.updated += group.version != before
                else:
                    group = services.group_create(
                        tenant=tenant, key=row["key"], attributes=row.get("attributes"), **fields
                    )
                    report.created += 1
            except DomainError as exc:
                exc.detail = f"line {number}: {exc.detail}"
                raise
            by_key[group.key] = group
        for number, row in rows:
            _sync_members(tenant, by_key, by_key[row["key"]], number, row.get("members", {}), report)
    return report


def _sync_members(tenant, by_key, group, number, members, report) -> None:
    """Make ``group``'s members exactly the line's, in chunks of the bulk limit."""
    externals = members.get("users", [])
    users = dict(User.objects.filter(tenant=tenant, external_id__in=externals).values_list("external_id", "id"))
    missing = [f"user {e!r}" for e in externals if e not in users] + [
        f"group {k!r}" for k in members.get("groups", []) if k not in by_key
    ]
    if missing:
        raise ValidationFailed([FieldError("/members", "unknown", f"line {number}: no {', '.join(missing[:20])}")])
    wanted = {str(users[e]) for e in externals} | {str(by_key[k].id) for k in members.get("groups", [])}
    current = {str(m.user_id or m.child_id) for m in Membership.objects.filter(group=group)}
    for ids, change in ((sorted(wanted - current), services.group_members_add),
                        (sorted(current - wanted), services.group_members_remove)):  # fmt: skip
        for start in range(0, len(ids), CHUNK):
            result = change(group=group, ids=ids[start : start + CHUNK])
            group = result.group
            count = len(result.users) + len(result.groups)
            if change is services.group_members_add:
                report.members_added += count
            else:
                report.members_removed += count
