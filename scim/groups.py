"""A SCIM Group ↔ our group: ``displayName`` ↔ ``display_name``, ``externalId`` ↔ ``external_id``,
``members`` ↔ memberships (users and groups, by id). The group's ``key`` (a slug, unique in the
tenant) is made from the first ``displayName`` and never changes after; the filter's attribute map."""

from __future__ import annotations

import re
import secrets
import unicodedata
import uuid
from typing import Any

from scim.errors import invalid_value
from scim.filter import AttrPath, BadFilter, Compare, Node, Or
from scim.query import TEXT, TIME, Target
from scim.schemas import GROUP

T = '"groups_group"'
MEMBERS = "members"


def key_for(display_name: str, taken: Any) -> str:
    """A slug of ``display_name`` (a-z, 0-9, '-'), with a random suffix when ``taken(slug)``."""
    ascii_name = unicodedata.normalize("NFKD", display_name).encode("ascii", "ignore").decode().lower()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name).strip("-")[:50].strip("-") or "group"
    while taken(slug):
        slug = f"{slug[:50].strip('-')}-{secrets.token_hex(3)}"
    return slug


def _string(value: Any, name: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > limit or not value.isprintable():
        raise invalid_value(f"{name} must be 1-{limit} printable characters")
    return value


def member_ids(value: Any) -> list[str]:
    """The ids of a ``members`` value: ``[{"value": id}, …]`` (a single object or bare id too)."""
    items = value if isinstance(value, list) else [value]
    ids = []
    for item in items:
        member = item.get("value") if isinstance(item, dict) else item
        if not isinstance(member, str):
            raise invalid_value("each member is an object with the value of a user or group id")
        try:
            member = str(uuid.UUID(member))  # one spelling, as the membership rows give it back
        except ValueError:
            pass  # not an id: the services name it in their 400
        ids.append(member)
    return list(dict.fromkeys(ids))


def group_fields(body: Any) -> tuple[dict[str, Any], list[str] | None]:
    """A SCIM Group (POST or PUT body) as (display_name, external_id) and its member ids (None: absent)."""
    if not isinstance(body, dict):
        raise invalid_value("a Group is a JSON object")
    fields: dict[str, Any] = {"external_id": None}
    members = None
    for key, value in body.items():
        lowered = str(key).lower()
        if lowered.startswith(GROUP.lower() + ":"):
            lowered = lowered[len(GROUP) + 1 :]
        if lowered in ("schemas", "id", "meta"):
            continue
        if lowered == "displayname":
            fields["display_name"] = _string(value, "displayName", 200)
        elif lowered == "externalid":
            fields["external_id"] = None if value in (None, "") else _string(value, "externalId", 255)
        elif lowered == MEMBERS:
            members = [] if value is None else member_ids(value)
        else:
            raise invalid_value(f"unknown attribute {key!r}")
    if "display_name" not in fields:
        raise invalid_value("displayName is required")
    return fields, members


def group_resource(group: Any, base: str, members: list[dict[str, Any]] | None) -> dict[str, Any]:
    body: dict[str, Any] = {"schemas": [GROUP], "id": str(group.id)}
    if group.external_id:
        body["externalId"] = group.external_id
    body["displayName"] = group.display_name or group.key
    if members is not None:
        body[MEMBERS] = [
            {"value": m["id"], "$ref": f"{base}/{m['kind']}s/{m['id']}", "type": m["kind"], "display": m["display"]}
            for m in members
        ]
    body["meta"] = {
        "resourceType": "Group",
        "created": group.created_at.isoformat().replace("+00:00", "Z"),
        "lastModified": group.updated_at.isoformat().replace("+00:00", "Z"),
        "location": f"{base}/Groups/{group.id}",
        "version": f'W/"{group.version}"',
    }
    return body


def _member_element(sub: str) -> Target:
    lowered = sub.lower()
    if lowered == "value":
        return Target(TEXT, "coalesce(e.user_id, e.child_id)::text", case_exact=True)
    if lowered == "type":
        return Target(TEXT, "CASE WHEN e.user_id IS NULL THEN 'Group' ELSE 'User' END")
    raise BadFilter(f"members.{sub} cannot be filtered on; members.value and members.type can")


def group_resolver(path: AttrPath) -> Target:
    if path.uri is not None and path.uri.lower() != GROUP.lower():
        raise BadFilter(f"unknown schema {path.uri!r}")
    attr, sub = path.attr.lower(), path.sub
    simple = {
        "id": Target(TEXT, f'{T}."id"::text', case_exact=True),
        "displayname": Target(TEXT, f'coalesce(nullif({T}."display_name", \'\'), {T}."key")'),
        "externalid": Target(TEXT, f'{T}."external_id"', case_exact=True),
    }
    if attr in simple and sub is None:
        return simple[attr]
    if attr == MEMBERS:
        rows = f'groups_membership AS e WHERE e.group_id = {T}."id"'
        if sub is not None:
            _member_element(sub)
        return Target(rows=rows, element=_member_element, default=sub or "value", sortable=False)
    if attr == "meta" and sub is not None and sub.lower() in ("created", "lastmodified"):
        return Target(TIME, f'{T}."{"created_at" if sub.lower() == "created" else "updated_at"}"')
    raise BadFilter(f"cannot filter on {path}")


def ids_of_value_filter(node: Node) -> list[str]:
    """The member ids ``members[value eq "a" or value eq "b"]`` names; 400 for any other filter."""
    if isinstance(node, Or):
        return ids_of_value_filter(node.left) + ids_of_value_filter(node.right)
    if (
        isinstance(node, Compare)
        and node.op == "eq"
        and node.path.uri is None
        and node.path.attr.lower() == "value"
        and node.path.sub is None
        and isinstance(node.value, str)
    ):
        return [node.value]
    raise BadFilter('a members path filters by value: members[value eq "<id>"] (or several joined by or)')
