"""The per-key btree indexes of *searchable* definitions: equality, range, prefix, exists/missing and ordering.

``CREATE INDEX CONCURRENTLY`` cannot run in a transaction and may take minutes on a large tenant, so
a worker runs it (:mod:`attributes.tasks`), queued on commit by the definition services; the state
(building, ready, failed) is a :class:`SearchIndex` row the console shows. One partial index per
tenant and key, on the very expression :func:`attributes.search.typed_expression` compiles to, then
``created_at``::

    CREATE INDEX CONCURRENTLY attr_search_<hash> ON users_user (iam_attr_numeric(attributes -> 'clearance'), created_at)
    WHERE tenant_id = '…'

``created_at`` second: for an equality on the key (which the search compiles to the typed
expression as well as to containment) the index holds the matches in page order, so a first page
reads its 51 rows whether the value is rare or common, instead of every match then a sort. A key's
index of the first shape (the expression alone, named by :data:`SHAPE` 1) is dropped once its
successor is built. Containment (``in``, list membership, keys that are not searchable) is served
by the GIN index on the whole document.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.db import DatabaseError, connection
from django.utils import timezone
from psycopg import sql

from attributes import holders
from attributes.models import AttributeDefinition, SearchIndex
from attributes.search import TEXT_TYPES, TYPED_FUNCTION
from attributes.selectors import forget_schemas

Type = AttributeDefinition.Type
INDEXED_TYPES = (*TYPED_FUNCTION, *TEXT_TYPES)


SHAPE = 2  # 1: (expression); 2: (expression, created_at)


def index_name(definition: AttributeDefinition, shape: int = SHAPE) -> str:
    seed = f"{definition.tenant_id}:{definition.target}:{definition.key}"
    digest = hashlib.sha1((seed if shape == 1 else f"{seed}:{shape}").encode()).hexdigest()
    return f"attr_search_{digest[:24]}"


def index_names(definition: AttributeDefinition) -> list[str]:
    """Every name the key's index may have: this shape's, and the first shape's (an earlier release's)."""
    return [index_name(definition), index_name(definition, shape=1)]


def _expression(definition: AttributeDefinition) -> sql.Composable:
    key = sql.Literal(definition.key)
    if definition.type in TYPED_FUNCTION:
        return sql.SQL("{}(attributes -> {})").format(sql.Identifier(TYPED_FUNCTION[definition.type][0]), key)
    return sql.SQL("lower(attributes ->> {})").format(key)


def _table(definition: AttributeDefinition) -> sql.Identifier:
    return sql.Identifier(holders.subjects_of(definition.target, definition.tenant_id).model._meta.db_table)


def create_statement(definition: AttributeDefinition, name: str) -> sql.Composed:
    opclass = sql.SQL(" text_pattern_ops" if definition.type in TEXT_TYPES else "")
    return sql.SQL(
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS {} ON {} (({}){}, created_at) WHERE tenant_id = {}::uuid"
    ).format(
        sql.Identifier(name), _table(definition), _expression(definition), opclass,
        sql.Literal(str(definition.tenant_id)),
    )  # fmt: skip


def statistics_statements(definition: AttributeDefinition, name: str) -> list[sql.Composed]:
    """Statistics on the expression, then ANALYZE: PostgreSQL gathers none for a *partial* index's
    expression, and without them it guesses a third of the rows for any range and never picks the index."""
    return [
        sql.SQL("CREATE STATISTICS IF NOT EXISTS {} ON ({}) FROM {}").format(
            sql.Identifier(_statistics_name(name)), _expression(definition), _table(definition)
        ),
        sql.SQL("ANALYZE {}").format(_table(definition)),
    ]


def _statistics_name(name: str) -> str:
    return name.replace("attr_search_", "attr_stats_")


def _execute(statement: sql.Composable) -> None:
    if connection.in_atomic_block:
        raise RuntimeError("search indexes are built and dropped outside a transaction (CONCURRENTLY)")
    connection.ensure_connection()
    text = statement.as_string(connection.connection)
    with connection.cursor() as cursor:
        cursor.execute("SET statement_timeout = 0")  # a build takes as long as the tenant is large
        try:
            cursor.execute(text)
        finally:
            cursor.execute("RESET statement_timeout")


def _drop(name: str) -> None:
    _execute(sql.SQL("DROP STATISTICS IF EXISTS {}").format(sql.Identifier(_statistics_name(name))))
    _execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(name)))


def _invalid(name: str) -> bool:
    """A build that failed half-way leaves an INVALID index that ``IF NOT EXISTS`` would keep."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT NOT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = %s",
            [name],
        )
        row = cursor.fetchone()
    return bool(row and row[0])


def search_index_sync(*, definition_id: Any) -> SearchIndex | None:
    """Build the index of a searchable definition, or drop the index of one that no longer is."""
    definition = AttributeDefinition.objects.filter(pk=definition_id).first()
    if definition is None:
        return None
    if not definition.searchable or definition.type not in INDEXED_TYPES:
        for name in index_names(definition):  # the index and its row, whichever shape was built
            search_index_drop(name=name)
        return None
    name = index_name(definition)
    index, _ = SearchIndex.objects.update_or_create(
        definition=definition,
        defaults={"name": name, "state": SearchIndex.State.BUILDING, "error": "", "started_at": timezone.now()},
    )
    try:
        if _invalid(name):
            _drop(name)
        _execute(create_statement(definition, name))
        for statement in statistics_statements(definition, name):
            _execute(statement)
    except DatabaseError as exc:  # e.g. out of disk, a lock timeout, a deadlock with another DDL
        index.state, index.error = SearchIndex.State.FAILED, str(exc)[:2000]
        _drop(name)
    else:
        index.state = SearchIndex.State.READY
        _drop(index_name(definition, shape=1))  # the first shape's index, superseded (nothing if none)
    index.finished_at = timezone.now()
    index.save(update_fields=["state", "error", "finished_at"])
    forget_schemas()
    return index


def search_index_drop(*, name: str) -> None:
    SearchIndex.objects.filter(name=name).update(state=SearchIndex.State.DROPPING)
    forget_schemas()
    _drop(name)
    SearchIndex.objects.filter(name=name).delete()
