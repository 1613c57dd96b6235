"""The release policy at the API's doors (access/release.py): what a principal may read of the
attribute values in an answer of the users, groups and tenants APIs; reads of PII by a key counted."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from access.pii_audit import pii_read_count
from access.principals import Principal
from access.release import restrict
from attributes.selectors import pii_keys
from core.errors import FieldError, ValidationFailed


def released(
    principal: Principal, tenant_id: UUID | str | None, data: Any, *, pii: frozenset[str] | None = None
) -> Any:
    """``data`` (one serialized object or a list, each with ``attributes``) with the values the
    principal's policy lets out; ``tenant_id`` ``None``: each object is a tenant (its own ``id``).
    ``pii``: the tenant's PII keys when the caller holds them (``attributes.selectors.tenant_schema``),
    not to be read again."""
    release, with_pii = principal.release, 0
    if release.full and principal.kind != "key":  # a console user: nothing to cut, nothing to count
        return data
    items = data if isinstance(data, list) else [data]
    cached: dict[str, frozenset[str] | set[str]] = {} if pii is None else {str(tenant_id): pii}
    for item in items:
        owner = str(tenant_id if tenant_id is not None else item["id"])
        if owner not in cached:
            cached[owner] = pii_keys(UUID(owner))
        flagged = cached[owner]
        if not flagged and release.attributes is None:  # every key released, none flagged: nothing to cut
            continue
        item["attributes"], released_pii = restrict(dict(item["attributes"]), flagged, release)
        with_pii += released_pii
    if with_pii and principal.kind == "key":
        pii_read_count(key_id=principal.id, subjects=with_pii)
    return data


def within_release(
    principal: Principal, tenant_id: UUID, fields: dict[str, Any], held: dict[str, Any], *, partial: bool
) -> dict[str, Any]:
    """A write's fields, for a principal with a release policy: it names only keys the principal may
    read (a withheld key is refused as an unknown one is: no hint), and a PUT keeps the values the
    principal cannot see (``held``: the object's current values) instead of removing them."""
    release = principal.release
    given = fields.get("attributes")
    if release.full or (given is None and partial):
        return fields
    given = given or {}
    pii = pii_keys(tenant_id)
    errors = [
        FieldError(f"/attributes/{key}", "unknown", f"no attribute definition {key!r} for this tenant")
        for key in sorted(given)
        if not release.allows(key, pii)
    ]
    if errors:
        raise ValidationFailed(errors)
    if not partial:
        withheld = {key: value for key, value in held.items() if not release.allows(key, pii)}
        if withheld or "attributes" in fields:
            fields["attributes"] = {**withheld, **given}
    return fields
