"""The skeleton of every write service that changes or deletes one row: lock it, check its version,
save it, turn a unique-constraint clash into a conflict.

A view reads the object before the service runs, outside the service's transaction; by the time the
service locks the row a concurrent DELETE may have removed it. :func:`lock_for_write` answers that
with :class:`NotFound` (404, the object is gone) instead of letting ``DoesNotExist`` become a 500,
and a stale ``If-Match`` with :class:`PreconditionFailed` (412).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast

from django.core.exceptions import ObjectDoesNotExist
from django.db import IntegrityError, connection, transaction
from django.db.models import Model

from core.errors import Conflict, NotFound, PreconditionFailed
from core.guards import DomainModel, domain_write

M = TypeVar("M", bound=DomainModel)


def lock_for_write(obj: M, *, expected_version: int | None = None) -> M:
    """A fresh copy of ``obj`` read with ``SELECT … FOR UPDATE``; call inside the write's transaction."""
    assert connection.in_atomic_block, "lock_for_write runs inside the service's transaction"
    model = type(obj)
    try:
        # cast: django-stubs types a model class's _default_manager by the class that declares it
        locked = cast(M, model._default_manager.select_for_update().get(pk=obj.pk))
    except ObjectDoesNotExist:  # the model's DoesNotExist
        raise NotFound(f"this {model._meta.verbose_name} no longer exists") from None
    if expected_version is not None and locked.version != expected_version:
        raise PreconditionFailed(locked.version)
    return locked


@contextmanager
def locked_for_write(obj: M, *, expected_version: int | None = None) -> Iterator[M]:
    """``with locked_for_write(user, expected_version=v) as locked:`` — the service's transaction and
    domain-write guard around a locked, version-checked fresh copy (:func:`lock_for_write`)."""
    with transaction.atomic(), domain_write():
        yield lock_for_write(obj, expected_version=expected_version)


def save_or_conflict(obj: Model, conflict: str, **save_kwargs: Any) -> None:
    """Save ``obj`` in a savepoint; a unique-constraint violation becomes :class:`Conflict` (409)."""
    try:
        with transaction.atomic():
            obj.save(**save_kwargs)
    except IntegrityError:
        raise Conflict(conflict) from None


def named_lock(namespace: str, name: str) -> None:
    """Serialise the transactions that take the lock ``(namespace, name)`` until each one ends (a
    PostgreSQL advisory lock of two 32-bit hashes: apart from the relay's single 64-bit keys)."""
    assert connection.in_atomic_block, "a named lock is held by a transaction"
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s), hashtext(%s))", [namespace, name])
