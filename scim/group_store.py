"""The SCIM Groups endpoint's operations on one tenant, shared by the views and ``/Bulk``; each write
is a call of ``groups/services.py``.

Members are changed by id, in chunks of ``GROUP_MEMBERS_BULK_MAX``, by the bulk membership services
(one ``INSERT … SELECT unnest`` or ``DELETE … ANY``): a PATCH that adds or removes members of a large
group never loads the group's members. Only a ``replace`` of all members (and a PUT) reads the
current member ids, to add and remove the difference. A PATCH answers 204 with the new ETag unless
the client asks for ``attributes``, so that it never renders a large group's members either.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet

from core.db.locking import lock_for_write
from core.errors import Conflict
from groups import services
from groups.models import Group
from groups.selectors import group_get, groups_of, member_ids_of, members_of_groups
from scim.errors import ScimError, invalid_path
from scim.filter import BadFilter, parse_path
from scim.groups import MEMBERS, group_fields, group_resolver, group_resource, ids_of_value_filter, key_for, member_ids
from scim.listing import ListQuery, list_response, page, projector
from scim.patch import Patcher, operations
from scim.schemas import GROUP

PATCHER = Patcher(core=GROUP, extensions=(), multi=set(), read_only={"id", "meta"})


def _chunks(ids: list[str]) -> Iterator[list[str]]:
    size = int(getattr(settings, "GROUP_MEMBERS_BULK_MAX", 1000))
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def wants_members(query: ListQuery | None) -> bool:
    if query is None:
        return True
    names = {name.lower().rsplit(":", 1)[-1].split(".")[0] for name in query.attributes or query.excluded}
    return (MEMBERS in names) if query.attributes else (MEMBERS not in names)


class GroupStore:
    core, extensions = GROUP, ()

    def __init__(self, tenant: Any, base: str) -> None:
        self.tenant, self.base = tenant, base
        self.pending_version: int | None = None

    def queryset(self) -> QuerySet[Group]:
        return groups_of(tenant=self.tenant)

    def get(self, group_id: str) -> Group:
        return group_get(tenant=self.tenant, group_id=group_id)

    def render(self, group: Group, query: ListQuery | None = None) -> dict[str, Any]:
        members = members_of_groups([group.id])[group.id] if wants_members(query) else None
        return group_resource(group, self.base, members)

    def listing(self, query: ListQuery) -> dict[str, Any]:
        project = projector(query, self.core, self.extensions)
        total, groups = page(self.queryset(), query, group_resolver)
        members = members_of_groups([g.id for g in groups]) if wants_members(query) else {}
        return list_response(total, query, [project(group_resource(g, self.base, members.get(g.id))) for g in groups])

    def _taken(self, key: str) -> bool:
        return self.queryset().filter(key=key).exists()

    def create(self, body: Any) -> Group:
        fields, members = group_fields(body)
        if fields["external_id"] is not None and self.queryset().filter(external_id=fields["external_id"]).exists():
            raise Conflict(f"a group with externalId {fields['external_id']!r} already exists in this tenant")
        with transaction.atomic():
            group = services.group_create(
                tenant=self.tenant, key=key_for(fields["display_name"], self._taken), **fields
            )
            for chunk in _chunks(members or []):
                group = services.group_members_add(group=group, ids=chunk).group
        return group

    def replace(self, group_id: str, body: Any, *, version: int | None) -> Group:
        fields, members = group_fields(body)
        self.pending_version = version
        with transaction.atomic():
            group = self._replace_members(self.get(group_id), members or [])
            group = services.group_update(group=group, expected_version=self._if_match(), **fields)
        return group

    def _replace_members(self, group: Group, wanted: list[str]) -> Group:
        current = member_ids_of(group)
        held, kept = set(current), set(wanted)
        # Adds first: an add locks its member groups before the group (groups/services.py's order).
        for chunk in _chunks([member for member in wanted if member not in held]):
            group = services.group_members_add(group=group, ids=chunk, expected_version=self._if_match()).group
        for chunk in _chunks([member for member in current if member not in kept]):
            group = services.group_members_remove(group=group, ids=chunk, expected_version=self._if_match()).group
        return group

    def _if_match(self) -> int | None:
        """The If-Match version, for the first service call of a write only (the later ones see its lock)."""
        version, self.pending_version = self.pending_version, None
        return version

    def _members(self, group: Group, op: str, ids: list[str] | None) -> Group:
        if op == "replace":
            return self._replace_members(group, ids or [])
        if op == "remove" and ids is None:
            ids = member_ids_of(group)
        write = services.group_members_remove if op == "remove" else services.group_members_add
        for chunk in _chunks(ids or []):
            group = write(group=group, ids=chunk, expected_version=self._if_match()).group
        return group

    def patch(self, group_id: str, body: Any, *, version: int | None) -> Group:
        ops = operations(body)
        # If-Match goes to the first service call, which locks the group in the services' own order
        # (member groups before the group: groups/services.py); nothing is locked here before it.
        self.pending_version = version
        with transaction.atomic():
            group = self.get(group_id)
            plain: list[tuple[str, str | None, Any]] = []
            for op, path, value in ops:
                if path is None and isinstance(value, dict):
                    rest = {k: v for k, v in value.items() if str(k).lower() != MEMBERS}
                    for k, v in value.items():
                        if str(k).lower() == MEMBERS:
                            group = self._members(group, op, member_ids(v))
                    if rest:
                        plain.append((op, None, rest))
                    continue
                target = self._members_path(path)
                if target is None:
                    plain.append((op, path, value))
                    continue
                ids = target if target else (None if value is None else member_ids(value))
                if target and op != "remove":
                    raise invalid_path("a members[value eq …] path is for remove; add members with path members")
                group = self._members(group, op, ids)
            if plain:
                current = {"displayName": group.display_name or group.key, "externalId": group.external_id}
                patched = PATCHER.apply({k: v for k, v in current.items() if v is not None}, plain)
                fields, _ = group_fields(patched)
                group = services.group_update(group=group, expected_version=self._if_match(), **fields)
            if self.pending_version is not None:  # no operation called a service: If-Match is checked here
                group = lock_for_write(group, expected_version=self._if_match())
        return group

    @staticmethod
    def _members_path(path: str | None) -> list[str] | None:
        """``None``: not a members path; ``[]``: ``members``; ids: ``members[value eq "…"]``."""
        if path is None:
            return None
        try:
            parsed = parse_path(path)
        except BadFilter as exc:
            raise invalid_path(f"{path!r}: {exc}") from None
        if parsed.path.attr.lower() != MEMBERS or (parsed.path.uri and parsed.path.uri.lower() != GROUP.lower()):
            return None
        if parsed.path.sub is not None or parsed.sub is not None:
            raise invalid_path("members are changed whole: a path of members has no sub-attribute")
        if parsed.filter is None:
            return []
        try:
            return ids_of_value_filter(parsed.filter)
        except BadFilter as exc:
            raise ScimError(400, str(exc), "invalidFilter") from None

    def delete(self, group_id: str, *, version: int | None) -> None:
        services.group_delete(group=self.get(group_id), expected_version=version)
