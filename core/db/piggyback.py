"""A check that rides along with the next query: read in the same round trip, not one of its own.

``with Piggyback("SELECT last_value FROM some_sequence") as check: ...`` sends the check's statement
in front of the first query the block runs, keeps its first row in ``check.row`` and hands the query's
own result to its caller untouched: on Django's cursors (client-side binding) one ``execute`` of two
statements; on a prepared cursor (``core.db.base.PreparingCursor``), which cannot run two statements
in one, both prepared statements in one psycopg pipeline (one round trip too). A block that runs no query leaves ``check.row`` unset
(``check.done`` is False): the caller reads the check itself, with :meth:`Piggyback.read`.

The check's statement takes no parameters and must return one row (of ``width`` columns); it runs
before the query, in the same implicit transaction when autocommit is on, so what it reads is at
least as old as what the query reads.

Cheaper still, a query that knows it may carry a check does so in **one statement**: the pipeline
costs as much client CPU as the lookup it rides on (two statements to send, sync and read back).
:func:`fetch_all` runs a query and returns its rows, carrying the check of an enclosing block on that
connection if no query has read it yet (none on any other connection, a replica's say): the check's
columns in front of the query's, ``LEFT JOIN LATERAL`` so that one row comes back even when the
query finds nothing. The query's first column must never be NULL.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any

import psycopg
from django.db import connection


class Piggyback:
    def __init__(self, statement: str, width: int = 1) -> None:
        assert "%" not in statement and ";" not in statement, "a parameterless single statement"
        self.statement = statement
        self.width = width
        self.row: tuple[Any, ...] | None = None
        self.done = False
        self.carrying = False
        self._wrapper: AbstractContextManager[None] | None = None

    @staticmethod
    def riding(conn: Any) -> Piggyback | None:
        """The check of an enclosing block on ``conn`` that no query has read yet, or None."""
        for wrapper in getattr(conn, "execute_wrappers", ()):
            if isinstance(wrapper, Piggyback) and not wrapper.done and not wrapper.carrying:
                return wrapper
        return None

    def carry(self, sql: str) -> str:
        """``sql`` (one statement returning rows) with the check's columns in front: one statement."""
        self.carrying = True
        return f"SELECT c.*, q.* FROM ({self.statement}) c LEFT JOIN LATERAL ({sql}) q ON true"

    def rows(self, fetched: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """The carried statement's rows without the check's columns (none where the query found none)."""
        width = self.width
        self.row = fetched[0][:width] if fetched else None
        self.done = True
        return [row[width:] for row in fetched if row[width] is not None]

    def __call__(self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
        if self.done or self.carrying or many:
            return execute(sql, params, many, context)
        cursor = context["cursor"].cursor  # psycopg's, under Django's wrapper
        if isinstance(cursor, psycopg.ClientCursor):
            result = execute(f"{self.statement}; {sql}", params, many, context)
            self.done = True
            self.row = cursor.fetchone()
            cursor.nextset()
            return result
        check = type(cursor)(cursor.connection)  # the same kind: prepared too
        if not psycopg.Pipeline.is_supported():  # a psycopg built on libpq < 14: two round trips
            with context["connection"].wrap_database_errors:
                check.execute(self.statement)
            result = execute(sql, params, many, context)
        else:
            # The results (and errors) arrive as the pipeline ends: Django's error classes, as from execute.
            with context["connection"].wrap_database_errors, cursor.connection.pipeline():
                check.execute(self.statement)
                result = execute(sql, params, many, context)
        self.done = True
        self.row = check.fetchone()
        return result

    def __enter__(self) -> Piggyback:
        self._wrapper = connection.execute_wrapper(self)
        self._wrapper.__enter__()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        assert self._wrapper is not None
        self._wrapper.__exit__(kind, error, trace)

    def read(self) -> tuple[Any, ...] | None:
        """The check's row: the one read with the block's first query, else read now (a round trip)."""
        if not self.done:
            with connection.cursor() as cursor:
                cursor.execute(self.statement)
                self.row = cursor.fetchone()
            self.done = True
        return self.row


def fetch_all(conn: Any, cursor: Any, sql: str, params: Any) -> list[tuple[Any, ...]]:
    """``cursor.execute(sql, params)`` on ``conn`` and its rows, carrying the check of an enclosing
    :class:`Piggyback` block in the same statement when one is pending."""
    check = Piggyback.riding(conn)
    if check is None:
        cursor.execute(sql, params)
        return list(cursor.fetchall())
    cursor.execute(check.carry(sql), params)
    return check.rows(cursor.fetchall())
