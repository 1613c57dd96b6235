"""Writes to tenants. Every function changes the rows and records its event in one transaction."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, Unpack

from django.conf import settings
from django.utils import timezone

from attributes.holder_updates import holder_updated
from attributes.models import AttributeDefinition
from attributes.validation import validate_attributes
from core.db.locking import locked_for_write
from core.errors import Conflict, FieldError, NotFound, ValidationFailed
from core.field_updates import UpdateOptions, assign_changed, replacement, update_of
from outbox.changes import Aggregate, record_changes
from tenants.models import Tenant, TenantRevision


class TenantChanges(UpdateOptions, total=False):
    """What ``tenant_update`` may change."""

    slug: str
    name: str
    status: str
    events_include_pii: bool


def tenant_data(tenant: Tenant) -> dict[str, Any]:
    """The state of a tenant as events carry it."""
    return {
        "id": str(tenant.id),
        "slug": tenant.slug,
        "name": tenant.name,
        "status": tenant.status,
        "events_include_pii": tenant.events_include_pii,
        "attributes": tenant.attributes,
        "version": tenant.version,
        "deleted_at": tenant.deleted_at.isoformat() if tenant.deleted_at else None,
    }


TENANTS = Aggregate[Tenant](
    "Tenant", tenant_data, lambda tenant: tenant.slug, tenant_of=lambda tenant: tenant.id, attributes_changed_event=True
)


def _full_clean(tenant: Tenant) -> None:
    from django.core.exceptions import ValidationError

    try:
        tenant.full_clean(exclude=["attributes"], validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        raise ValidationFailed(
            [FieldError(f"/{field}", "invalid", " ".join(messages)) for field, messages in exc.message_dict.items()]
        ) from None


def tenant_create(
    *,
    slug: str,
    name: str,
    status: str = Tenant.Status.ACTIVE,
    attributes: dict[str, Any] | None = None,
    events_include_pii: bool = False,
) -> Tenant:
    tenant = Tenant(slug=slug, name=name, status=status, attributes={}, events_include_pii=events_include_pii)
    _full_clean(tenant)
    if attributes:
        # A new tenant has no definitions yet, so any attribute key is unknown.
        validate_attributes([], attributes)
    return TENANTS.insert(tenant, f"a tenant with slug {slug!r} already exists")


def tenant_update(*, tenant: Tenant, **changes: Unpack[TenantChanges]) -> Tenant:
    """Change ``fields`` (slug, name, status) and/or the attribute values; one event if anything changed.

    ``attributes`` replaces the map, or with ``merge_attributes`` is merged into it (``None`` removes a key).
    """
    update = update_of(changes, TenantChanges)
    with locked_for_write(tenant, expected_version=update.expected_version) as locked:
        if locked.deleted_at is not None:  # deleted since the caller read it: restore it first
            raise NotFound(f"tenant {locked.slug!r} has been deleted")
        before = tenant_data(locked)
        changed = assign_changed(locked, update.fields)
        if changed:
            _full_clean(locked)
        conflict = f"a tenant with slug {locked.slug!r} already exists"
        target = AttributeDefinition.Target.TENANT
        return holder_updated(TENANTS, locked, before, changed, conflict, update, target=target)


REPLACE_DEFAULTS = {"status": Tenant.Status.ACTIVE, "events_include_pii": False}


def tenant_replace(
    *, tenant: Tenant, expected_version: int | None = None, attributes: dict[str, Any] | None = None, **fields: Any
) -> Tenant:
    """PUT: the tenant becomes what is given; an absent field takes its default (``REPLACE_DEFAULTS``),
    absent attributes are removed."""
    return tenant_update(
        tenant=tenant, expected_version=expected_version, **replacement(attributes, fields, REPLACE_DEFAULTS)
    )


def _lifecycle(tenant: Tenant, event: str, expected_version: int | None, change: Callable[[Tenant], None]) -> Tenant:
    """``change`` the locked tenant and record it as the event ``Tenant<event>``."""
    with locked_for_write(tenant, expected_version=expected_version) as locked:
        before = tenant_data(locked)
        change(locked)
        locked.version += 1
        locked.save()
        record_changes([TENANTS.change(locked, event, tenant_data(locked), before=before)])
    return locked


def tenant_delete(*, tenant: Tenant, expected_version: int | None = None) -> Tenant:
    """Soft delete: the tenant and everything in it disappear from the API and the PIP at once, and
    can be restored until ``tenant_purge`` removes them after ``TENANT_RETENTION_DAYS``."""

    def delete(locked: Tenant) -> None:
        if locked.deleted_at is not None:
            raise Conflict(f"tenant {locked.slug!r} is already deleted")
        locked.deleted_at = timezone.now()

    return _lifecycle(tenant, "Deleted", expected_version, delete)


def tenant_restore(*, tenant: Tenant) -> Tenant:
    def restore(locked: Tenant) -> None:
        if locked.deleted_at is None:
            raise Conflict(f"tenant {locked.slug!r} is not deleted")
        locked.deleted_at = None

    return _lifecycle(tenant, "Restored", None, restore)


def tenant_suspend(*, tenant: Tenant) -> Tenant:
    return tenant_update(tenant=tenant, status=Tenant.Status.SUSPENDED)


def tenant_purge(*, tenant: Tenant, force: bool = False) -> int:
    """Remove a soft-deleted tenant with its users and definitions for good; returns the users removed.

    Refused before the retention period is over unless ``force``. One ``TenantPurged`` event stands
    for everything removed (consumers drop the tenant); each removed user is in the audit record.
    """
    with locked_for_write(tenant) as locked:
        if locked.deleted_at is None:
            raise Conflict(f"tenant {locked.slug!r} is not deleted; delete it first")
        due = locked.deleted_at + timedelta(days=settings.TENANT_RETENTION_DAYS)
        if not force and timezone.now() < due:
            raise Conflict(f"tenant {locked.slug!r} can be restored until {due.isoformat()}; purge refused")
        users = locked.users.all().delete()[0]  # the users app sits above this one: its rows through the relation
        AttributeDefinition.objects.filter(tenant=locked).delete()
        purged = TENANTS.removed(locked, "Purged", users_removed=users)
        locked.delete()
        record_changes([purged])
        TenantRevision.objects.filter(tenant_id=tenant.pk).delete()  # nothing left to version
    return users


def tenants_purge_due() -> list[str]:
    """Purge every soft-deleted tenant past retention (the periodic task); returns their slugs."""
    cutoff = timezone.now() - timedelta(days=settings.TENANT_RETENTION_DAYS)
    purged = []
    for tenant in Tenant.objects.filter(deleted_at__lt=cutoff):
        tenant_purge(tenant=tenant)
        purged.append(tenant.slug)
    return purged
