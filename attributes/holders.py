"""Who holds attribute values: the subjects a definition constrains, registered by the apps that own them.

A definition's target (``user``, ``tenant``) names a kind of subject; the app that owns that kind
registers, in its ``AppConfig.ready``, how to list a tenant's subjects of it. Changing a definition
checks the values those subjects hold, without this app importing the apps above it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from django.db.models import QuerySet
from django.dispatch import Signal

from attributes.models import SUBJECTS_OF_TARGET

SubjectsOf = Callable[[UUID], QuerySet[Any]]
_holders: dict[str, SubjectsOf] = {}

#: Sent (``tenant_id=``) in the transaction of every definition change; the tenants app moves the
#: tenant's schema version (part of the PIP's ETag) on it.
schema_changed = Signal()


def register(target: str, subjects_of: SubjectsOf) -> None:
    """``subjects_of(tenant_id)``: the tenant's subjects of ``target``, each with an ``attributes`` document."""
    _holders[target] = subjects_of


def subjects_of(target: str, tenant_id: UUID) -> QuerySet[Any]:
    return _holders[target](tenant_id)


def subject_sets_of(target: str, tenant_id: UUID) -> list[QuerySet[Any]]:
    """Every kind of subject a definition's target constrains (``user_and_group``: users and groups)."""
    return [_holders[kind](tenant_id) for kind in SUBJECTS_OF_TARGET[target] if kind in _holders]
