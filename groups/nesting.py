"""Nesting rules: no cycles, and no chain of nested groups longer than ``GROUPS_MAX_DEPTH``.

A chain is a group, a group it contains, a group that one contains, and so on; its depth is the
number of groups in it (a user directly in a group that is in no other group: depth 1). The check
reads the tenant's nesting edges in one query, under :func:`nesting_lock`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from functools import cache
from uuid import UUID

from django.conf import settings
from django.db import connection

from core.db.locking import named_lock
from core.errors import Conflict
from groups.models import Group

EDGES = """
    SELECT m.group_id, m.child_id FROM groups_membership m JOIN groups_group g ON g.id = m.group_id
    WHERE g.tenant_id = %s AND m.child_id IS NOT NULL
"""


def max_depth() -> int:
    """The ``GROUPS_MAX_DEPTH`` setting: groups in the longest chain (default 5)."""
    return int(getattr(settings, "GROUPS_MAX_DEPTH", 5))


class NestingConflict(Conflict):
    """409 with ``path``: the group keys of the cycle the change would close, or of the too-deep chain."""

    def __init__(self, detail: str, path: list[str]) -> None:
        super().__init__(detail)
        self.members = {"path": path}


def nesting_lock(tenant_id: UUID) -> None:
    """Serialise the tenant's nesting changes until the transaction ends (taken before any row lock)."""
    named_lock("groups.nesting", str(tenant_id))


def check_nesting(parent: Group, children: Iterable[UUID]) -> None:
    """Refuse (409, with the path) adding ``children`` to ``parent`` if that closes a cycle or nests too deep."""
    contains: dict[UUID, list[UUID]] = defaultdict(list)
    contained_in: dict[UUID, list[UUID]] = defaultdict(list)
    with connection.cursor() as cursor:
        cursor.execute(EDGES, [parent.tenant_id])
        for group_id, child_id in cursor.fetchall():
            contains[group_id].append(child_id)
            contained_in[child_id].append(group_id)

    @cache
    def longest_down(group: UUID) -> tuple[UUID, ...]:
        """The longest chain from ``group`` down (``group`` first)."""
        below = [longest_down(child) for child in sorted(contains[group])]
        return (group, *max(below, key=len, default=()))

    @cache
    def longest_up(group: UUID) -> tuple[UUID, ...]:
        """The longest chain from the outermost group down to ``group``."""
        above = [longest_up(outer) for outer in sorted(contained_in[group])]
        return (*max(above, key=len, default=()), group)

    limit = max_depth()
    for child in sorted(set(children)):
        path = _path_down(contains, child, parent.id)
        if path is not None:
            keys = _keys([*path, child])
            raise NestingConflict(f"adding {keys[0]!r} to {keys[-2]!r} would close a cycle: {' > '.join(keys)}", keys)
        chain = longest_up(parent.id) + longest_down(child)
        if len(chain) > limit:
            keys = _keys(list(chain))
            raise NestingConflict(
                f"groups nest at most {limit} deep; this would make {' > '.join(keys)} ({len(chain)})", keys
            )


def _path_down(contains: dict[UUID, list[UUID]], start: UUID, goal: UUID) -> list[UUID] | None:
    """The shortest containment path from ``start`` down to ``goal`` (both included), if any."""
    previous: dict[UUID, UUID | None] = {start: None}
    frontier = [start]
    while frontier:
        following = []
        for group in frontier:
            if group == goal:
                path = [group]
                while (step := previous[path[-1]]) is not None:
                    path.append(step)
                return path[::-1]
            for child in sorted(contains[group]):
                if child not in previous:
                    previous[child] = group
                    following.append(child)
        frontier = following
    return None


def _keys(ids: list[UUID]) -> list[str]:
    keys = dict(Group.objects.filter(id__in=set(ids)).values_list("id", "key"))
    return [keys.get(group, str(group)) for group in ids]
