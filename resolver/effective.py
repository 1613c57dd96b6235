"""Effective attributes: a user's own values, else its groups' (highest priority first), else defaults.

The PIP reads them in the lookup's one SQL statement: ``GROUPS`` calls a PL/pgSQL function whose
recursive query over the memberships (bounded by ``GROUPS_MAX_DEPTH``) returns every group the user
reaches, with its attributes, priority, depth and the member group it was reached through, and
``RULES`` the tenant's effective rules (definitions with a ``default`` or ``merge: union``) — both as
JSON text, NULL when there are none, in which case the user's own attribute text is spliced into the
answer as before and nothing is decoded.

Rules, for each key:
- ``merge: replace`` (the default): the user's own value; else the value of the first group that
  has one, groups ordered by priority (highest first), ties by key; else the definition's default.
- ``merge: union`` (``string_list``): the sorted union of the user's and every group's list; the
  default if none has one.
- ``groups``: the sorted keys of every group the user is in, directly or through other groups
  (united with the user's own ``groups`` list, if the tenant defines one).

With ``explain``, each key's sources: ``{"source": "user"}``, ``{"source": "group:<key>",
"path": [the group keys from the user's direct group to that group]}`` or ``{"source": "default"}``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from django.conf import settings

#: The groups user ``u`` reaches, as JSON text — key, priority, attributes, depth, the member group it
#: was reached through, version — or NULL. One parameter: the depth bound. A user in no group costs one
#: probe of the membership index; the function's recursive query runs only for the others
#: (resolver/migrations/0002_effective_groups_function.py).
GROUPS = """CASE WHEN EXISTS (SELECT 1 FROM groups_membership m WHERE m.user_id = u.id)
    THEN iam_effective_groups(u.id, %s) END"""
#: The effective rules of tenant ``t`` (definitions with a ``default`` or ``merge: union``), as JSON
#: text, or NULL.
RULES = """(SELECT json_agg(json_build_array(d.key, d."default", d.merge) ORDER BY d.key)::text
    FROM attributes_attributedefinition d WHERE d.tenant_id = t.id AND (d."default" IS NOT NULL OR d.merge = 'union'))"""


def max_depth() -> int:
    """``GROUPS_MAX_DEPTH`` (default 5): the writes refuse deeper nesting, the reads stop there too."""
    return int(getattr(settings, "GROUPS_MAX_DEPTH", 5))


@dataclass(frozen=True)
class Reached:
    """A group a user is in: directly (``path`` of one key) or through the groups of ``path``."""

    key: str
    priority: int
    attributes: dict[str, Any]
    path: tuple[str, ...]


@dataclass(frozen=True)
class Rule:
    default: Any
    union: bool


def rules_from(text: str | None) -> dict[str, Rule]:
    if not text:
        return {}
    return {key: Rule(default, merge == "union") for key, default, merge in orjson.loads(text)}


def reached_from(text: str, *, with_paths: bool = True) -> list[Reached]:
    """The groups of ``EFFECTIVE``'s JSON, each with its path (only an explanation shows paths: without
    ``with_paths`` each path is the group alone), in the order they win (priority, key)."""
    rows = {row[0]: row for row in orjson.loads(text)}
    paths: dict[str, tuple[str, ...]] = {}

    def path(key: str) -> tuple[str, ...]:
        if not with_paths:
            return (key,)
        if key not in paths:
            via = rows[key][4]
            paths[key] = (*path(via), key) if via is not None and via in rows else (key,)
        return paths[key]

    reached = [Reached(key, row[1], row[2] or {}, path(key)) for key, row in rows.items()]
    return sorted(reached, key=lambda group: (-group.priority, group.key))


def groups_etag_part(text: str) -> str:
    """A digest of everything the reached groups contribute (keys, priorities, attributes, paths, versions)."""
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


USER = {"source": "user"}
DEFAULT = {"source": "default"}
#: Where a value came from: the user (``USER``), a default (``DEFAULT``), or a group.
Source = dict[str, Any] | Reached


def _described(source: Source) -> dict[str, Any]:
    if isinstance(source, Reached):
        return {"source": f"group:{source.key}", "path": list(source.path)}
    return source


def compute(
    own: dict[str, Any], groups: list[Reached], rules: dict[str, Rule], *, explain: bool = False
) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """(effective attributes, their sources — empty unless ``explain``); ``groups`` in winning order."""
    values: dict[str, Any] = {}
    sources: dict[str, list[Source]] = {}
    keys: dict[str, None] = dict.fromkeys(own)
    for group in groups:
        keys.update(dict.fromkeys(group.attributes))
    keys.update({key: None for key, rule in rules.items() if rule.default is not None})
    for key in keys:
        rule = rules.get(key)
        if rule is not None and rule.union:
            found: list[tuple[Source, Any]] = [(USER, own[key])] if isinstance(own.get(key), list) else []
            found += [(g, g.attributes[key]) for g in groups if isinstance(g.attributes.get(key), list)]
            if found:
                values[key] = sorted({item for _, value in found for item in value})
                sources[key] = [source for source, _ in found]
                continue
        elif key in own:
            values[key], sources[key] = own[key], [USER]
            continue
        else:
            winner = next((g for g in groups if key in g.attributes), None)
            if winner is not None:
                values[key], sources[key] = winner.attributes[key], [winner]
                continue
        if rule is not None and rule.default is not None:
            values[key], sources[key] = rule.default, [DEFAULT]
    if groups:
        listed = own.get("groups")
        own_groups: list[Any] = listed if isinstance(listed, list) else []
        values["groups"] = sorted({group.key for group in groups} | set(own_groups))
        if explain:
            sources["groups"] = ([USER] if own_groups else []) + sorted(groups, key=lambda g: g.key)
    if not explain:
        return values, {}
    return values, {key: [_described(source) for source in found] for key, found in sources.items()}


def effective_text(
    own_text: str, groups_text: str | None, rules_text: str | None, *, explain: bool = False
) -> tuple[str, str | None]:
    """(the effective attributes as JSON text, the sources as JSON text or None); the own text as is
    when no group and no rule applies and no explanation is asked for."""
    if groups_text is None and rules_text is None and not explain:
        return own_text, None
    groups = reached_from(groups_text, with_paths=explain) if groups_text else []
    values, sources = compute(orjson.loads(own_text), groups, rules_from(rules_text), explain=explain)
    return orjson.dumps(values).decode(), orjson.dumps(sources).decode() if explain else None


def reached_through(
    direct: Iterable[str], contained_in: dict[str, list[str]], groups: dict[str, tuple[str, int, dict]], depth: int
) -> list[Reached]:
    """The groups reached from the ``direct`` group ids (for the bundle, which reads all groups once):
    ``contained_in`` maps a group id to the ids of the groups it is a member of."""
    best: dict[str, tuple[str, ...]] = {}
    frontier: list[tuple[str, tuple[str, ...]]] = [
        (group_id, (groups[group_id][0],)) for group_id in sorted(direct, key=lambda g: groups[g][0])
    ]
    level = 1
    while frontier and level <= depth:
        following: list[tuple[str, tuple[str, ...]]] = []
        for group_id, path in frontier:
            if group_id in best:
                continue
            best[group_id] = path
            for outer in contained_in.get(group_id, ()):
                following.append((outer, (*path, groups[outer][0])))
        frontier, level = sorted(following, key=lambda item: item[1]), level + 1
    reached = [Reached(groups[g][0], groups[g][1], groups[g][2], path) for g, path in best.items()]
    return sorted(reached, key=lambda group: (-group.priority, group.key))
