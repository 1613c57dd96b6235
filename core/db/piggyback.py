"""A check that rides along with the next query: read in the same round trip, not one of its own.

``with Piggyback("SELECT last_value FROM some_sequence") as check: ...`` sends the check's statement
in front of the first query the block runs (one ``execute`` of two statements, client-side binding:
Django's default cursor on psycopg 3), keeps its first row in ``check.row`` and hands the query's own
result to its caller untouched. A block that runs no query leaves ``check.row`` unset
(``check.done`` is False): the caller reads the check itself, with :meth:`Piggyback.read`.

The check's statement takes no parameters and must return one row; it runs before the query, in
the same implicit transaction when autocommit is on, so what it reads is at least as old as what
the query reads.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any

from django.db import connection


class Piggyback:
    def __init__(self, statement: str) -> None:
        assert "%" not in statement and ";" not in statement, "a parameterless single statement"
        self.statement = statement
        self.row: tuple[Any, ...] | None = None
        self.done = False
        self._wrapper: AbstractContextManager[None] | None = None

    def __call__(self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
        if self.done or many:
            return execute(sql, params, many, context)
        result = execute(f"{self.statement}; {sql}", params, many, context)
        self.done = True
        cursor = context["cursor"].cursor  # psycopg's, under Django's wrapper
        self.row = cursor.fetchone()
        cursor.nextset()
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
