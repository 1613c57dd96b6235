"""PostgreSQL backend that counts operational failures in ``database_errors_total``.

``ENGINE = "core.db"``. Counted: a connection that cannot be opened (refused, timed out,
authentication), and a statement that fails operationally (connection lost, statement timeout,
deadlock, serialization failure). Not counted: integrity errors (a duplicate answered with 409) and
programming errors. A cursor wrapper alone would miss "connection refused", which happens before
any statement runs: that is why the connect path is wrapped too.

``prepared_cursor()``: a cursor whose statements PostgreSQL parses and plans once per connection, for
the few statements on the PIP's hot path (on the simple protocol that Django's cursors use, planning
the lookup cost as much as running it: docs/performance.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from django.db import DEFAULT_DB_ALIAS, InterfaceError, OperationalError
from django.db.backends.postgresql import base, operations
from django.db.backends.utils import CursorWrapper

from core import metrics
from core.db import replicas

OPERATIONAL = (psycopg.OperationalError, psycopg.InterfaceError, OperationalError, InterfaceError)


def count_operational_errors(
    execute: Callable[[str, Any, bool, dict[str, Any]], Any], sql: str, params: Any, many: bool, context: dict[str, Any]
) -> Any:
    try:
        return execute(sql, params, many, context)
    except OPERATIONAL as exc:
        metrics.DATABASE_ERRORS.inc()
        _replica_failed(context["connection"].alias, exc)
        raise


def _replica_failed(alias: str, exc: BaseException) -> None:
    if alias != DEFAULT_DB_ALIAS:  # skipped until its next check; the request is answered from the primary
        replicas.failed(alias, f"{type(exc).__name__}: {exc}".strip())


class PreparingCursor(base.ServerBindingCursor, psycopg.Cursor[Any]):  # psycopg's Cursor, named for the type checker
    """Parameters bound on the server, and every statement prepared on its first run (psycopg names it
    and keeps up to ``prepared_max`` per connection). ``DB_PREPARED_STATEMENTS=false`` (the connection's
    ``prepare_threshold`` is then None) keeps the server-side binding and prepares nothing."""

    def execute(
        self, query: Any, params: Any = None, *, prepare: bool | None = None, binary: bool | None = None
    ) -> Any:
        return super().execute(query, params, prepare=True if prepare is None else prepare, binary=binary)


class DatabaseOperations(operations.DatabaseOperations):
    def last_executed_query(self, cursor: Any, sql: str, params: Any) -> str:
        """The query log's text of a prepared statement too (psycopg keeps none): the statement with
        its parameters, composed as Django composes them for server-side binding."""
        if isinstance(cursor, PreparingCursor):
            try:
                return str(self.compose_sql(sql, params))
            except psycopg.errors.DataError:
                return sql
        return super().last_executed_query(cursor, sql, params)


class DatabaseWrapper(base.DatabaseWrapper):
    ops_class = DatabaseOperations

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.execute_wrappers.append(count_operational_errors)

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        try:
            return super().get_new_connection(conn_params)
        except OPERATIONAL as exc:
            metrics.DATABASE_ERRORS.inc()
            _replica_failed(self.alias, exc)
            raise

    def prepared_cursor(self) -> CursorWrapper:
        """``cursor()``, for statements prepared once per connection: the same health check, wrappers
        (this module's, the tests' SQL guard) and query log. Only ``%s`` placeholders, and statements
        PostgreSQL can prepare (no ``SET``, no DDL, one statement)."""
        self.close_if_health_check_failed()
        self.ensure_connection()
        self.validate_thread_sharing()
        with self.wrap_database_errors:
            cursor = PreparingCursor(self.connection)
        # django-stubs type make_cursor's argument as the wrapper it returns; Django passes the driver's cursor
        if self.queries_logged:
            return self.make_debug_cursor(cursor)  # type: ignore[arg-type]
        return self.make_cursor(cursor)  # type: ignore[arg-type]


def prepared_cursor(conn: Any) -> CursorWrapper:
    """``conn.prepared_cursor()`` on this backend; a plain cursor on any other (a test's SQLite, say)."""
    prepared = getattr(conn, "prepared_cursor", None)  # through django.db.connection's proxy too
    cursor: CursorWrapper = prepared() if prepared is not None else conn.cursor()
    return cursor
