"""A benchmark measured in this one process (bench/groups.py, bench/scim.py): Django set up against an
embedded PostgreSQL of its own (the pgserver wheel) in a temporary directory, migrated."""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from bench.lib.measure import save_report


def setup_django(tmp: Path) -> object:
    from devtools.embedded import free_port, quiet_pgserver

    quiet_pgserver()
    import pgserver

    server = pgserver.get_server(tmp / "pg", cleanup_mode="stop")
    server.psql("CREATE DATABASE bench;")
    os.environ.update(
        IAM_ENV="development", IAM_DATA_DIR=str(tmp / "data"), DJANGO_SETTINGS_MODULE="iam_project.settings",
        DATABASE_URL=server.get_uri("bench"), EVENT_BUS_URL=f"nats://127.0.0.1:{free_port()}",
        CELERY_BROKER_URL="memory://", LOG_LEVEL="WARNING", DEBUG="false", PIP_THROTTLE_RATE="1000000/s",
        API_THROTTLE_RATE="1000000/s", DB_STATEMENT_TIMEOUT_MS="600000",
    )  # fmt: skip
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return server


@contextmanager
def django_run(name: str, parser: argparse.ArgumentParser) -> Iterator[tuple[argparse.Namespace, dict]]:
    """``with django_run("groups", parser) as (args, report):`` — the command line parsed, Django ready
    on a fresh database; ``report`` (the time and the arguments to begin with) is saved as
    ``bench/results/<name>-….json`` at the end, then the database stops."""
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix=f"iam-bench-{name}-") as tmp:
        server = setup_django(Path(tmp))
        report: dict = {"at": datetime.now(UTC).isoformat(), "args": vars(args)}
        yield args, report
        save_report(name, report)
        from django.db import connections

        connections.close_all()
        server.cleanup()  # type: ignore[attr-defined]  # a pgserver server
