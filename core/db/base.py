"""PostgreSQL backend that counts operational failures in ``database_errors_total``.

``ENGINE = "core.db"``. Counted: a connection that cannot be opened (refused, timed out,
authentication), and a statement that fails operationally (connection lost, statement timeout,
deadlock, serialization failure). Not counted: integrity errors (a duplicate answered with 409) and
programming errors. A cursor wrapper alone would miss "connection refused", which happens before
any statement runs: that is why the connect path is wrapped too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from django.db import DEFAULT_DB_ALIAS, InterfaceError, OperationalError
from django.db.backends.postgresql import base

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


class DatabaseWrapper(base.DatabaseWrapper):
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
