"""Effective attributes for the OPA bundle: the tenant's groups and rules read once, then each user's
attributes computed from its direct groups as the users stream past (resolver/bundle.py).

Memory: the groups (with their attributes), the nesting edges, and a bounded memo of the groups'
contribution per distinct set of direct groups — independent of the number of users.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from functools import lru_cache

import orjson

from core.db.replicas import read_connection
from resolver.effective import RULES, Reached, compute, max_depth, reached_through, rules_from

GROUPS = "SELECT id::text, key, priority, attributes::text, version FROM groups_group WHERE tenant_id = %s ORDER BY key"
EDGES = """
    SELECT m.child_id::text, m.group_id::text FROM groups_membership m JOIN groups_group g ON g.id = m.group_id
    WHERE g.tenant_id = %s AND m.child_id IS NOT NULL
"""
TENANT_RULES = f"SELECT {RULES} FROM tenants_tenant t WHERE t.id = %s"
#: The users of a tenant with the ids of the groups they are directly in (NULL: none).
USERS = """
    SELECT u.external_id, u.id::text, u.status, u.attributes::text, u.version,
           (SELECT array_agg(m.group_id::text) FROM groups_membership m WHERE m.user_id = u.id)
    FROM users_user u WHERE u.tenant_id = %s ORDER BY u.external_id
"""
MEMO_SIZE = 4096


class TenantGroups:
    """One tenant's groups, nesting and effective rules, for computing many users' attributes."""

    def __init__(self, tenant_id: str) -> None:
        self.groups: dict[str, tuple[str, int, dict]] = {}
        self.contained_in: dict[str, list[str]] = defaultdict(list)
        self.group_rows: list[tuple[str, str, int, str, int]] = []
        with read_connection().cursor() as cursor:
            cursor.execute(GROUPS, [tenant_id])
            for group_id, key, priority, attributes, version in cursor.fetchall():
                self.groups[group_id] = (key, priority, orjson.loads(attributes))
                self.group_rows.append((group_id, key, priority, attributes, version))
            cursor.execute(EDGES, [tenant_id])
            for child, outer in cursor.fetchall():
                self.contained_in[child].append(outer)
            cursor.execute(TENANT_RULES, [tenant_id])
            self.rules = rules_from(cursor.fetchone()[0])
        self._reached = lru_cache(maxsize=MEMO_SIZE)(self._reach)
        self._inherited_only = lru_cache(maxsize=MEMO_SIZE)(self._inherited)

    def _reach(self, direct: tuple[str, ...]) -> list[Reached]:
        return reached_through(direct, self.contained_in, self.groups, max_depth())

    def attributes_text(self, own_text: str, direct: list[str] | None) -> str:
        """The user's effective attributes as JSON text (its own text as is when nothing applies)."""
        if not direct and not self.rules:
            return own_text
        combination = tuple(sorted(direct or ()))
        if own_text == "{}":  # most users hold no value of their own: one answer per set of groups
            return self._inherited_only(combination)
        values, _ = compute(orjson.loads(own_text), self._reached(combination), self.rules)
        return orjson.dumps(values).decode()

    def _inherited(self, combination: tuple[str, ...]) -> str:
        values, _ = compute({}, self._reached(combination), self.rules)
        return orjson.dumps(values).decode()

    def groups_json(self, cut: Callable[[str], str] = lambda text: text) -> str:
        """``{"<key>": {"id", "priority", "attributes", "version"}, …}``; ``cut``: the release policy's filter."""
        return ",".join(
            f'{json.dumps(key)}:{{"id":"{group_id}","priority":{priority},"attributes":{cut(attributes)},"version":{version}}}'
            for group_id, key, priority, attributes, version in self.group_rows
        )
