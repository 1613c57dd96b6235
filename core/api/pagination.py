"""Cursor pagination; a cursor the client forged or mangled is a 400 naming ``cursor``, never a 500."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.db.models import Field, Model, QuerySet
from rest_framework import pagination
from rest_framework.exceptions import ErrorDetail, NotFound
from rest_framework.exceptions import ValidationError as BadRequest
from rest_framework.request import Request


def _invalid(parameter: str, detail: str) -> BadRequest:
    return BadRequest({parameter: [ErrorDetail(detail, code=parameter)]})


def _invalid_cursor(reason: str) -> BadRequest:
    return BadRequest(
        {"cursor": [ErrorDetail(f"not a cursor of this list ({reason}); use a next/previous link", code="cursor")]}
    )


class CursorPagination(pagination.CursorPagination):
    """Stable cursor pages; ``?page_size=`` up to ``IAM_MAX_PAGE_SIZE``.

    DRF decodes a cursor's offset and direction but takes its position as it comes, so a forged one
    (``?cursor=cD14`` is ``p=x``) reached the query as a bad timestamp. Here the position must be a
    value of the field the list is ordered by; DRF's own "invalid cursor" 404 becomes a 400 too.
    ``page_size`` is an integer of at least 1 (DRF ignored anything else); above the maximum it is capped.
    """

    ordering = "-created_at"
    page_size_query_param = "page_size"
    max_page_size = settings.IAM_MAX_PAGE_SIZE

    def paginate_queryset(
        self, queryset: QuerySet[Any, Any] | Sequence[Any], request: Request, view: Any = None
    ) -> list[Any] | None:
        assert isinstance(queryset, QuerySet), "the API's lists are querysets"
        self._model: type[Model] = queryset.model
        self._annotations = dict(queryset.query.annotations)
        return super().paginate_queryset(queryset, request, view)

    def get_page_size(self, request: Request) -> int | None:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
            raise _invalid("page_size", f"an integer from 1 (at most {self.max_page_size} are returned)")
        return min(int(raw), self.max_page_size)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"]["minimum"] = 1
                parameter["description"] = f"Results per page, capped at {self.max_page_size}."
        return parameters

    def decode_cursor(self, request: Request) -> pagination.Cursor | None:
        try:
            cursor = super().decode_cursor(request)
        except NotFound:
            raise _invalid_cursor("malformed") from None
        if cursor is None or cursor.position is None:
            return cursor
        if "\x00" in cursor.position:  # type: ignore[operator]  # djangorestframework-stubs type Cursor.position as int; DRF decodes it as str
            raise _invalid_cursor("bad position")
        name = self.ordering[0].lstrip("-")
        try:
            if name in self._annotations:  # ordered by an expression (an attribute): a value of its type
                self._annotations[name].output_field.to_python(cursor.position)
            else:
                field = self._model._meta.get_field(name)
                assert isinstance(field, Field), "the list is ordered by a column, not a relation"
                field.to_python(cursor.position)
        except (FieldDoesNotExist, ValidationError, ValueError, TypeError):
            raise _invalid_cursor("bad position") from None
        return cursor
