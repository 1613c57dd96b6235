"""Process start-up: the FATAL line and exit for configuration the service cannot run with."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import NoReturn

# gunicorn halts the whole server (instead of respawning workers forever) when a worker exits
# with this code, so the same code serves web, worker, beat and management commands.
EXIT_CONFIG = 3


def fatal(error: Exception) -> NoReturn:
    """Write one FATAL JSON line naming the variable (no password) and exit non-zero."""
    variable = getattr(error, "variable", None)
    line = {
        "time": datetime.now(UTC).isoformat(),
        "level": "FATAL",
        "logger": "iam_project.startup",
        "message": f"FATAL configuration error: {error}",
        "variable": variable,
    }
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()
    sys.exit(EXIT_CONFIG)


def wait_for_database(timeout: float | None = None) -> None:
    """Start-up check of web, worker and beat: the database answers within ``timeout`` seconds
    (default: the ``DB_STARTUP_WAIT_SECONDS`` setting), or FATAL.

    Retries with short pauses (a database that is still starting is normal during a rollout); the
    connection is closed afterwards so that no forked process inherits it.
    """
    import time

    from django.conf import settings
    from django.db import connection

    from core.config import ConfigError

    if timeout is None:
        timeout = settings.DB_STARTUP_WAIT_SECONDS
    deadline = time.monotonic() + timeout
    pause = 0.25
    while True:
        try:
            connection.ensure_connection()
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            connection.close()
            return
        except Exception as exc:  # noqa: BLE001 - any failure to reach it is the same diagnosis
            connection.close()
            if time.monotonic() + pause > deadline:
                fatal(ConfigError("DATABASE_URL", f"database unreachable after {timeout:g} s: {_first_line(exc)}"))
            time.sleep(pause)
            pause = min(pause * 2, 2.0)


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
