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
