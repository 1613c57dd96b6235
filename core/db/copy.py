"""Bulk inserts with PostgreSQL's COPY: what ``bulk_create`` does, without building SQL text.

``bulk_create`` spends most of a bulk import's time in the client, rendering JSON values into
array literals; COPY streams the rows instead (docs/performance.md, "Import"). Used by the bulk
write paths (imports, bulk event and audit recording) inside their transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import connection, models
from django.db.models.fields import AutoFieldMixin
from psycopg.types.json import Jsonb

from core.guards import DomainModel, require_domain_write


def copy_insert(model: type[models.Model], objects: Iterable[models.Model]) -> int:
    """COPY ``objects`` into ``model``'s table; database-generated keys are left to the database.

    ``auto_now``/``auto_now_add`` fields are not filled in: the caller sets them.
    """
    if issubclass(model, DomainModel):
        require_domain_write(f"copy_insert({model.__name__})")
    fields = [field for field in model._meta.concrete_fields if not isinstance(field, AutoFieldMixin)]
    json_fields = {field.attname for field in fields if isinstance(field, models.JSONField)}
    columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)  # type: ignore[arg-type]  # django-stubs: Field.column is optional; a concrete field has one
    sql = f"COPY {connection.ops.quote_name(model._meta.db_table)} ({columns}) FROM STDIN"
    count = 0
    with connection.cursor() as cursor, connection.wrap_database_errors, cursor.cursor.copy(sql) as copy:
        for obj in objects:
            copy.write_row([_value(obj, field.attname, json_fields) for field in fields])
            count += 1
    return count


def _value(obj: models.Model, attname: str, json_fields: set[str]) -> Any:
    value = getattr(obj, attname)
    if attname in json_fields and value is not None:
        return Jsonb(value)
    return value
