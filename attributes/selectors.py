"""Reads of attribute definitions."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import NamedTuple
from uuid import UUID

from django.db.models import Exists, OuterRef, QuerySet

from attributes.models import TARGETS_OF_SUBJECT, AttributeDefinition, SearchIndex
from core.errors import NotFound


def definitions_for(*, tenant_id: UUID, target: str) -> list[AttributeDefinition]:
    """The definitions a subject of kind ``target`` (user, group, tenant) holds values of, each with
    ``search_ready``: whether its search index is built (the search compiles for it only then)."""
    return list(_with_search_ready(tenant_id).filter(target__in=TARGETS_OF_SUBJECT[target]))


def _with_search_ready(tenant_id: UUID) -> QuerySet[AttributeDefinition]:
    ready = SearchIndex.objects.filter(definition=OuterRef("pk"), state=SearchIndex.State.READY)
    return AttributeDefinition.objects.filter(tenant_id=tenant_id).annotate(search_ready=Exists(ready))


class Schema(NamedTuple):
    """A tenant's attribute definitions (every target, each with ``search_ready``) and its PII keys."""

    version: int  # the tenant's schema_version they were read at
    read_at: float  # time.monotonic() of the read
    definitions: tuple[AttributeDefinition, ...]
    pii: frozenset[str]

    def of(self, target: str) -> list[AttributeDefinition]:
        """The definitions a subject of kind ``target`` holds values of (as ``definitions_for``)."""
        targets = TARGETS_OF_SUBJECT[target]
        return [definition for definition in self.definitions if definition.target in targets]


#: How long a process answers from its copy of a tenant's schema before reading it again, while the
#: tenant's ``schema_version`` holds. Every change of a definition bumps that version in its own
#: transaction, so a copy never outlives a change of the definitions; what this bounds is whether a key's
#: search index is built (``search_ready``, set by the worker that builds it), which only chooses between
#: two plans that find the same users (docs/search.md).
SCHEMA_SECONDS = 10.0
SCHEMAS_HELD = 1024  # tenants whose schema a process holds (least recently used dropped first)
_schemas: OrderedDict[UUID, Schema] = OrderedDict()
_schemas_lock = threading.Lock()  # a threaded worker's requests share the process's copies


def tenant_schema(*, tenant_id: UUID, schema_version: int) -> Schema:
    """The schema of the tenant whose row, read in this request, has ``schema_version``: this process's
    copy while the version holds (and for SCHEMA_SECONDS), else read once (one query) and kept.

    The hot reads of a tenant's users (the list and its search) need the definitions and the PII keys on
    every request; reading them cost two queries and ten model instances per page (docs/performance.md).
    The definitions are shared between requests: callers must not change them.
    """
    now = time.monotonic()
    with _schemas_lock:
        held = _schemas.get(tenant_id)
        if held is not None and held.version == schema_version and now - held.read_at < SCHEMA_SECONDS:
            _schemas.move_to_end(tenant_id)
            return held
    definitions = tuple(_with_search_ready(tenant_id))
    schema = Schema(schema_version, now, definitions, frozenset(d.key for d in definitions if d.pii))
    with _schemas_lock:
        _schemas[tenant_id] = schema
        _schemas.move_to_end(tenant_id)
        while len(_schemas) > SCHEMAS_HELD:
            _schemas.popitem(last=False)
    return schema


def forget_schemas() -> None:
    """Drop every held schema: this process built or dropped a search index (``search_ready`` moved)."""
    with _schemas_lock:
        _schemas.clear()


def definition_get(*, tenant_id: UUID, key: str) -> AttributeDefinition:
    try:
        return AttributeDefinition.objects.get(tenant_id=tenant_id, key=key)
    except AttributeDefinition.DoesNotExist:
        raise NotFound(f"no attribute definition {key!r} in this tenant") from None


def pii_keys(tenant_id: UUID) -> set[str]:
    """The tenant's attribute keys flagged as PII."""
    return set(AttributeDefinition.objects.filter(tenant_id=tenant_id, pii=True).values_list("key", flat=True))
