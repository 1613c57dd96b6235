"""A SCIM User ↔ our user: the mapping of docs/scim.md, both ways, and the filter's attribute map.

- ``userName`` ↔ ``external_id``; ``displayName`` ↔ ``display_name``; ``active`` ↔ ``status``
  (``active``/``disabled``); ``emails`` → ``email`` is the primary (else the first) address;
- ``externalId``, ``name``, the other core strings, ``emails``, ``phoneNumbers``, ``addresses`` and
  the enterprise extension are kept as given in the user's ``profile`` (events and audit carry it);
- the tenant's extension ↔ ``attributes``, typed and validated by the services like every door's;
- ``groups`` is read-only: the groups the user is directly a member of.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attributes.models import AttributeDefinition
from scim.errors import ScimError, invalid_value
from scim.filter import AttrPath, BadFilter
from scim.query import BOOL, JSONBOOL, NUMBER, TEXT, TIME, Target
from scim.schemas import (
    ENTERPRISE,
    ENTERPRISE_STRINGS,
    NAME_PARTS,
    PROFILE_STRINGS,
    TENANT_EXTENSION,
    USER,
)
from users.models import User

T = '"users_user"'
#: Multi-valued complex attributes kept in the profile, with the sub-attributes an element may have.
PROFILE_LISTS = {
    "emails": ("value", "display", "type", "primary"),
    "phoneNumbers": ("value", "display", "type", "primary"),
    "addresses": (
        "formatted", "streetAddress", "locality", "region", "postalCode", "country", "type", "primary",
    ),
    "ims": ("value", "display", "type", "primary"),
    "photos": ("value", "display", "type", "primary"),
    "roles": ("value", "display", "type", "primary"),  # Entra sends "roles": [] with every user
    "entitlements": ("value", "display", "type", "primary"),
}  # fmt: skip
IGNORED = {"schemas", "id", "meta", "groups"}  # read-only (or protocol) members of a PUT or POST body
_TRUE_FALSE = {"true": True, "false": False}


def boolean(value: Any, name: str) -> bool:
    """A SCIM boolean; the strings ``"True"``/``"False"`` (any case) as Microsoft Entra ID sends them."""
    if isinstance(value, str) and value.lower() in _TRUE_FALSE:
        return _TRUE_FALSE[value.lower()]
    if not isinstance(value, bool):
        raise invalid_value(f"{name} must be a boolean")
    return value


def _canonical(names: Any) -> dict[str, str]:
    return {name.lower(): name for name in names}


CORE = _canonical(
    ["userName", "externalId", "name", "displayName", "active", *PROFILE_STRINGS, *PROFILE_LISTS, *IGNORED, "password"]
)
ENTERPRISE_NAMES = _canonical([*ENTERPRISE_STRINGS, "manager"])


def _string(value: Any, name: str, limit: int = 1000) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise invalid_value(f"{name} must be a string of at most {limit} characters")
    return value


def _element(value: Any, name: str, subs: tuple[str, ...]) -> dict[str, Any]:
    if isinstance(value, str) and "value" in subs:
        value = {"value": value}
    if not isinstance(value, dict):
        raise invalid_value(f"each of {name} is an object")
    allowed, clean = _canonical(subs), {}
    for key, item in value.items():
        sub = allowed.get(str(key).lower())
        if sub is None:
            raise invalid_value(f"{name} has no sub-attribute {key!r}")
        clean[sub] = boolean(item, f"{name}.primary") if sub == "primary" else _string(item, f"{name}.{sub}")
    return clean


def _elements(value: Any, name: str) -> list[dict[str, Any]]:
    items = value if isinstance(value, list) else [value]
    clean = [_element(item, name, PROFILE_LISTS[name]) for item in items if item is not None]
    if sum(1 for item in clean if item.get("primary") is True) > 1:
        raise invalid_value(f"at most one of {name} is primary")
    return clean


def _name(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise invalid_value("name is an object")
    parts = _canonical(NAME_PARTS)
    clean = {}
    for key, item in value.items():
        part = parts.get(str(key).lower())
        if part is None:
            raise invalid_value(f"name has no sub-attribute {key!r}")
        if item is not None:
            clean[part] = _string(item, f"name.{part}")
    return clean


def _enterprise(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid_value(f"{ENTERPRISE} is an object")
    clean: dict[str, Any] = {}
    for key, item in value.items():
        name = ENTERPRISE_NAMES.get(str(key).lower())
        if name is None:
            raise invalid_value(f"the enterprise extension has no attribute {key!r}")
        if item is None or item == "":
            continue
        if name == "manager":
            manager = {"value": item} if isinstance(item, str) else item  # Entra sends the manager's id alone
            if not isinstance(manager, dict) or not isinstance(manager.get("value", ""), str):
                raise invalid_value("manager is an object with a string value")
            clean[name] = {k: _string(v, f"manager.{k}") for k, v in manager.items() if k in ("value", "$ref")}
        else:
            clean[name] = _string(item, name)
    return clean


def _tenant_values(value: Any, definitions: list[AttributeDefinition]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid_value(f"{TENANT_EXTENSION} is an object")
    kinds = {definition.key: definition.type for definition in definitions}
    clean = {}
    for key, item in value.items():
        if kinds.get(key) == "boolean" and isinstance(item, str) and item.lower() in _TRUE_FALSE:
            item = _TRUE_FALSE[item.lower()]  # Entra's "True"/"False"; the services check the rest
        clean[key] = item
    return clean


def user_fields(body: Any, definitions: list[AttributeDefinition]) -> dict[str, Any]:
    """A SCIM User (POST or PUT body) as the keyword arguments of ``user_create``/``user_replace``;
    ``attributes`` only when the body has the tenant's extension (a PUT without it keeps them)."""
    if not isinstance(body, dict):
        raise invalid_value("a User is a JSON object")
    profile: dict[str, Any] = {}
    fields: dict[str, Any] = {"status": User.Status.ACTIVE, "display_name": "", "email": ""}
    for key, value in body.items():
        lowered = str(key).lower()
        if lowered == ENTERPRISE.lower():
            if value is not None:
                enterprise = _enterprise(value)
                if enterprise:
                    profile["enterprise"] = enterprise
            continue
        if lowered == TENANT_EXTENSION.lower():
            fields["attributes"] = _tenant_values({} if value is None else value, definitions)
            continue
        if lowered.startswith(USER.lower() + ":"):
            lowered = lowered[len(USER) + 1 :]
        name = CORE.get(lowered)
        if name is None:
            raise invalid_value(f"unknown attribute {key!r}")
        if name == "schemas" and not (isinstance(value, list) and all(isinstance(urn, str) for urn in value)):
            raise invalid_value("schemas is a list of schema URNs")
        if name in IGNORED or value is None:
            continue
        if name == "password":
            raise ScimError(
                400, "passwords are not kept by this service (changePassword is not supported)", "mutability"
            )
        if name == "userName":
            fields["external_id"] = _string(value, "userName", 255)
        elif name == "displayName":
            fields["display_name"] = _string(value, "displayName", 200)
        elif name == "active":
            fields["status"] = User.Status.ACTIVE if boolean(value, "active") else User.Status.DISABLED
        elif name == "name":
            if parts := _name(value):
                profile["name"] = parts
        elif name in PROFILE_LISTS:
            if elements := _elements(value, name):
                profile[name] = elements
        else:
            profile[name] = _string(value, name)
    if "external_id" not in fields:
        raise invalid_value("userName is required")
    emails = profile.get("emails", [])
    primary = next((e for e in emails if e.get("primary") is True), emails[0] if emails else None)
    fields["email"] = (primary or {}).get("value", "")
    fields["profile"] = profile
    return fields


def user_resource(user: User, base: str, groups: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The SCIM representation of ``user`` (``groups``: its direct groups, as the selector gives them)."""
    profile = user.profile or {}
    location = f"{base}/Users/{user.id}"
    body: dict[str, Any] = {"schemas": [USER], "id": str(user.id)}
    if "externalId" in profile:
        body["externalId"] = profile["externalId"]
    body["userName"] = user.external_id
    if "name" in profile:
        body["name"] = profile["name"]
    if user.display_name:
        body["displayName"] = user.display_name
    body.update({name: profile[name] for name in PROFILE_STRINGS if name in profile})
    body["active"] = user.status == User.Status.ACTIVE
    body.update({name: profile[name] for name in PROFILE_LISTS if name in profile})
    if groups:
        body["groups"] = [
            {"value": g["id"], "$ref": f"{base}/Groups/{g['id']}", "display": g["display_name"] or g["key"]}
            for g in groups
        ]
    if profile.get("enterprise"):
        body["schemas"].append(ENTERPRISE)
        body[ENTERPRISE] = profile["enterprise"]
    if user.attributes:
        body["schemas"].append(TENANT_EXTENSION)
        body[TENANT_EXTENSION] = user.attributes
    body["meta"] = {
        "resourceType": "User",
        "created": user.created_at.isoformat().replace("+00:00", "Z"),
        "lastModified": user.updated_at.isoformat().replace("+00:00", "Z"),
        "location": location,
        "version": f'W/"{user.version}"',
    }
    return body


# --- the filter's attribute map ---------------------------------------------------------------------
def _json_list(column: str, key: str, element: Any, *, text: bool = False) -> Target:
    array = f"{T}.{column} -> %s"
    function = "jsonb_array_elements_text" if text else "jsonb_array_elements"
    alias = "e(v)" if text else "e"
    rows = (
        f"{function}(CASE WHEN jsonb_typeof({array}) = 'array' THEN {array} ELSE '[]'::jsonb END) AS {alias} WHERE true"
    )
    return Target(rows=rows, params=(key, key), element=element, sortable=False)


def _profile_element(name: str) -> Any:
    subs = _canonical(PROFILE_LISTS[name])

    def element(sub: str) -> Target:
        canonical = subs.get(sub.lower())
        if canonical is None:
            raise BadFilter(f"{name} has no sub-attribute {sub!r}")
        if canonical == "primary":
            return Target(JSONBOOL, "e -> 'primary'")
        return Target(TEXT, "e ->> %s", (canonical,))

    return element


def _group_element(sub: str) -> Target:
    if sub.lower() != "value":
        raise BadFilter(f"groups.{sub} cannot be filtered on; groups.value can")
    return Target(TEXT, "e.group_id::text", case_exact=True)


def _typed(definition: AttributeDefinition) -> Target:
    key, value = definition.key, f'{T}."attributes" -> %s'
    if definition.type in ("integer", "number"):
        sql = f"CASE WHEN jsonb_typeof({value}) = 'number' THEN ({T}.\"attributes\" ->> %s)::numeric END"
        return Target(NUMBER, sql, (key, key))
    if definition.type == "boolean":
        return Target(JSONBOOL, value, (key,))
    if definition.type == "datetime":
        sql = f"CASE WHEN jsonb_typeof({value}) = 'string' THEN ({T}.\"attributes\" ->> %s)::timestamptz END"
        return Target(TIME, sql, (key, key))
    if definition.type == "string_list":
        return _json_list('"attributes"', key, lambda sub: _list_item(key, sub), text=True)
    return Target(TEXT, f'{T}."attributes" ->> %s', (key,), case_exact=True)


def _list_item(key: str, sub: str) -> Target:
    if sub != "value":
        raise BadFilter(f"{key} is a list of strings: filter on {key} itself")
    return Target(TEXT, "e.v", case_exact=True)


def user_resolver(definitions: Callable[[], list[AttributeDefinition]]) -> Any:
    """The attribute map of a User; ``definitions`` (the tenant's) is called only for its extension."""

    def resolve(path: AttrPath) -> Target:
        uri = (path.uri or USER).lower()
        attr, sub = path.attr, path.sub
        if uri == TENANT_EXTENSION.lower():
            definition = next((d for d in definitions() if d.key.lower() == attr.lower()), None)
            if definition is None or sub is not None:
                raise BadFilter(f"the tenant has no attribute {attr!r}")
            return _typed(definition)
        if uri == ENTERPRISE.lower():
            name = ENTERPRISE_NAMES.get(attr.lower())
            if name == "manager" and (sub or "value").lower() == "value":
                return Target(TEXT, f"{T}.\"profile\" -> 'enterprise' -> 'manager' ->> 'value'", case_exact=True)
            if name is None or name == "manager" or sub is not None:
                raise BadFilter(f"the enterprise extension has no attribute {path}")
            return Target(TEXT, f"{T}.\"profile\" -> 'enterprise' ->> %s", (name,))
        if uri != USER.lower():
            raise BadFilter(f"unknown schema {path.uri!r}")
        return _core(attr, sub)

    return resolve


def _core(attr: str, sub: str | None) -> Target:
    name = CORE.get(attr.lower()) or {"meta": "meta"}.get(attr.lower())
    simple = {
        "id": Target(TEXT, f'{T}."id"::text', case_exact=True),
        "userName": Target(TEXT, f'{T}."external_id"'),
        "displayName": Target(TEXT, f'{T}."display_name"'),
        "externalId": Target(TEXT, f"{T}.\"profile\" ->> 'externalId'", case_exact=True),
        "active": Target(BOOL, f"{T}.\"status\" = 'active'", sortable=False),
    }
    if name in simple and sub is None:
        return simple[name]
    if name == "name" and sub is not None and sub.lower() in _canonical(NAME_PARTS):
        return Target(TEXT, f"{T}.\"profile\" -> 'name' ->> %s", (_canonical(NAME_PARTS)[sub.lower()],))
    if name in PROFILE_STRINGS and sub is None:
        return Target(TEXT, f'{T}."profile" ->> %s', (name,))
    if name in PROFILE_LISTS:
        target = _json_list('"profile"', name, _profile_element(name))
        return target if sub is None else _with_sub(target, sub)
    if name == "groups":
        rows = f'groups_membership AS e WHERE e.user_id = {T}."id"'
        target = Target(rows=rows, element=_group_element, sortable=False)
        return target if sub is None else _with_sub(target, sub)
    if name == "meta" and sub is not None and sub.lower() in ("created", "lastmodified"):
        return Target(TIME, f'{T}."{"created_at" if sub.lower() == "created" else "updated_at"}"')
    if attr.lower() == "schemas" and sub is None:
        return _schemas()
    raise BadFilter(f"cannot filter on {attr}{'.' + sub if sub else ''}")


def _schemas() -> Target:
    """``schemas``: the URNs :func:`user_resource` lists — the core schema, the enterprise extension
    when the profile holds one, the tenant's extension when the user has attributes."""
    urns = (
        f"ARRAY[%s] || CASE WHEN coalesce({T}.\"profile\" -> 'enterprise', '{{}}') <> '{{}}' THEN ARRAY[%s] "
        f"ELSE '{{}}'::text[] END || CASE WHEN {T}.\"attributes\" <> '{{}}' THEN ARRAY[%s] ELSE '{{}}'::text[] END"
    )
    return Target(
        rows=f"unnest({urns}) AS e(v) WHERE true",
        params=(USER, ENTERPRISE, TENANT_EXTENSION),
        element=lambda sub: Target(TEXT, "e.v") if sub == "value" else _list_item("schemas", sub),
        sortable=False,
    )


def _with_sub(target: Target, sub: str) -> Target:
    assert target.element is not None, "a multi-valued target resolves its sub-attributes"
    target.element(sub)  # refuses an unknown sub-attribute now
    return Target(rows=target.rows, params=target.params, element=target.element, default=sub, sortable=False)
