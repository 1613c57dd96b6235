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
    """``sql``: ``COPY <table> (<every concrete column but a database-numbered key>) FROM STDIN``.

    ``per_row`` names the fields (name or attname) whose values :meth:`row` takes, in that order;
    every other column is the same on every row: from ``constants``, else the field's default (a
    callable one is called per row), else NULL where allowed — resolved once, so that building a row
    costs what a hand-written tuple does. JSON values are encoded (a ``str`` is taken as JSON text
    already); choices are written as their values.
    """

    def __init__(self, model: type[models.Model], per_row: tuple[str, ...], **constants: Any) -> None:
        fields = [f for f in model._meta.concrete_fields if not isinstance(f, models.AutoField)]
        columns = ", ".join(f'"{field.column}"' for field in fields)
        self.sql = f'COPY "{model._meta.db_table}" ({columns}) FROM STDIN'
        position = {name: index for index, f in enumerate(fields) for name in (f.name, f.attname)}
        unknown = [name for name in (*per_row, *constants) if name not in position]
        if unknown:
            raise KeyError(f"{model.__name__} has no field {', '.join(unknown)}")
        self.slots = [(position[name], isinstance(fields[position[name]], models.JSONField)) for name in per_row]
        given = {position[name] for name in per_row} | {position[name] for name in constants}
        self.template: list[Any] = [None] * len(fields)
        self.called: list[tuple[int, models.Field]] = []  # callable defaults: one call per row
        for name, value in constants.items():
            self.template[position[name]] = _encoded(fields[position[name]], value)
        for index, field in enumerate(fields):
            if index in given:
                continue
            if field.has_default() and callable(field.default):
                self.called.append((index, field))
            elif field.has_default() or field.null:
                self.template[index] = _encoded(field, field.get_default())
            else:
                raise KeyError(f"no value for {model.__name__}.{field.name} (no default): pass it to CopyRows")

    def row(self, *values: Any) -> list[Any]:
        out = self.template.copy()
        for (index, is_json), value in zip(self.slots, values, strict=True):
            out[index] = json.dumps(value) if is_json and not isinstance(value, str) and value is not None else value
        for index, field in self.called:
            out[index] = _encoded(field, field.get_default())
        return out


def _encoded(field: models.Field, value: Any) -> Any:
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(field, models.JSONField) and value is not None and not isinstance(value, str):
        return json.dumps(value)
    return value
