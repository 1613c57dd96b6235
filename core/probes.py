"""Kubernetes probes: ``/healthz`` (liveness, no I/O) and ``/readyz`` (database and migrations)."""

from __future__ import annotations

from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, JsonResponse

_migrations_checked = False


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    global _migrations_checked
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        if not _migrations_checked:
            executor = MigrationExecutor(connection)
            if executor.migration_plan(executor.loader.graph.leaf_nodes()):
                return JsonResponse({"status": "unready", "reason": "migrations not applied"}, status=503)
            _migrations_checked = True
    except DatabaseError as exc:
        return JsonResponse(
            {"status": "unready", "reason": f"database unreachable: {type(exc).__name__}"},
            status=503,
            headers={"Retry-After": "5"},
        )
    return JsonResponse({"status": "ready"})
