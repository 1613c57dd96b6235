"""Rows for PostgreSQL ``COPY`` into a model's table, the columns taken from the model's metadata.

The baselines of the benchmarks write the same tables as the code they compare with; a column added
to a model is added to their ``COPY`` too (with its default, or a loud error when it has none).
"""

from __future__ import annotations

import enum
import json
from typing import Any

from django.db import models


class CopyRows:
    """``sql``: ``COPY <table> (<every concrete column but the database-numbered key>) FROM STDIN``;
    ``row(**values)``: one row in that order. A value is looked up by field name or attname (``tenant`` or
    ``tenant_id``) in ``values``, then in ``constants`` (the same on every row), then the field's default;
    JSON fields are encoded (a ``str`` is taken as JSON text already), choices written as their values."""

    def __init__(self, model: type[models.Model], **constants: Any) -> None:
        self.fields = [f for f in model._meta.concrete_fields if not isinstance(f, models.AutoField)]
        columns = ", ".join(f'"{field.column}"' for field in self.fields)
        self.sql = f'COPY "{model._meta.db_table}" ({columns}) FROM STDIN'
        self.constants = constants
        self.json = {f.attname for f in self.fields if isinstance(f, models.JSONField)}

    def row(self, **values: Any) -> tuple:
        return tuple(self._value(field, values) for field in self.fields)

    def _value(self, field: models.Field, values: dict[str, Any]) -> Any:
        for source in (values, self.constants):
            for name in (field.name, field.attname):
                if name in source:
                    return self._encoded(field, source[name])
        if field.has_default() or field.null:
            return self._encoded(field, field.get_default())
        raise KeyError(f"no value for {field.model.__name__}.{field.name} (no default): pass it to COPY")

    def _encoded(self, field: models.Field, value: Any) -> Any:
        if isinstance(value, enum.Enum):
            value = value.value
        if field.attname in self.json and value is not None and not isinstance(value, str):
            return json.dumps(value)
        return value
