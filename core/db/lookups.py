"""Reading one row by the id a client sent: an id that is no UUID, or names no row, is a 404."""

from __future__ import annotations

import uuid
from typing import TypeVar

from django.core.exceptions import ObjectDoesNotExist
from django.db.models import Model, QuerySet

from core.errors import NotFound

M = TypeVar("M", bound=Model)


def get_by_id(rows: QuerySet[M], row_id: object, missing: str) -> M:
    """The row of ``rows`` whose primary key is the UUID ``row_id``; otherwise :class:`NotFound` saying
    ``missing`` (a malformed id and an unknown one answer alike)."""
    try:
        return rows.get(pk=uuid.UUID(str(row_id)))
    except (ValueError, ObjectDoesNotExist):  # the model's DoesNotExist
        raise NotFound(missing) from None
