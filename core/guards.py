"""The guard that keeps every write to the domain tables on the event-emitting path.

Domain rows (tenants, users, attribute definitions) change only inside :func:`domain_write`, which
the service functions open together with their transaction and their outbox row. ``Model.save()``,
``Model.delete()`` and the bulk ``QuerySet`` writes refuse to run outside it, so an admin default,
a shell one-liner or a forgotten code path fails loudly instead of committing a change without its
event. The test suite adds a second guard on the SQL itself (``tests/conftest.py``) that also covers
raw SQL.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from django.db import models

from core.context import holding

_domain_write = contextvars.ContextVar("domain_write", default=False)

_M = TypeVar("_M", bound=models.Model)


class DomainWriteOutsideService(RuntimeError):
    """A domain table was about to change outside a service function (no event would be written)."""


def domain_write() -> AbstractContextManager[None]:
    return holding(_domain_write, True)


def in_domain_write() -> bool:
    return _domain_write.get()


def require_domain_write(operation: str) -> None:
    if not _domain_write.get():
        raise DomainWriteOutsideService(
            f"{operation} outside a service function: call the <entity>_<action> service instead, "
            "so that the change is written together with its outbox event"
        )


class ServiceOnlyQuerySet(models.QuerySet[_M]):
    def update(self, **kwargs: Any) -> int:
        require_domain_write(f"{self.model.__name__}.objects.update()")
        return super().update(**kwargs)

    def delete(self) -> tuple[int, dict[str, int]]:
        require_domain_write(f"{self.model.__name__}.objects.delete()")
        return super().delete()

    def bulk_create(self, objs: Iterable[_M], *args: Any, **kwargs: Any) -> list[_M]:
        require_domain_write(f"{self.model.__name__}.objects.bulk_create()")
        return super().bulk_create(objs, *args, **kwargs)

    def bulk_update(self, objs: Iterable[_M], *args: Any, **kwargs: Any) -> int:
        require_domain_write(f"{self.model.__name__}.objects.bulk_update()")
        return super().bulk_update(objs, *args, **kwargs)


class DomainModel(models.Model):
    """Base of the domain models: saving or deleting an instance needs the service path.

    Each domain model declares ``version``, the counter that an ``If-Match`` is checked against
    (:func:`core.db.locking.lock_for_write`)."""

    version: int

    objects = ServiceOnlyQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        require_domain_write(f"{type(self).__name__}.save()")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        require_domain_write(f"{type(self).__name__}.delete()")
        return super().delete(*args, **kwargs)
