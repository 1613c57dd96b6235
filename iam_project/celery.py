"""The Celery app: ``celery -A iam_project worker`` and ``celery -A iam_project beat``."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from celery import Celery, signals

if Path(sys.argv[0]).name == "celery":
    # Each role connects to PostgreSQL with its own application_name (iam-worker, iam-beat).
    os.environ.setdefault("IAM_ROLE", "beat" if "beat" in sys.argv else "worker")
    if os.environ["IAM_ROLE"] == "worker":
        # Prefork children relay; their metrics are merged from this directory (set before prometheus_client
        # loads), emptied at start so that a restarted worker does not add up its predecessor's counters.
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="iam-worker-metrics-")
        for _stale in Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).glob("*.db"):
            _stale.unlink()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "iam_project.settings")

app = Celery("iam_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.setup_logging.connect
def use_django_logging(**kwargs: object) -> None:
    """Celery must not take over the root logger: Django's LOGGING (JSON on stdout) applies."""
    from logging.config import dictConfig

    from django.conf import settings

    dictConfig(settings.LOGGING)


@signals.worker_init.connect
def worker_start(**kwargs: object) -> None:
    from django.conf import settings

    from iam_project.startup import wait_for_database

    wait_for_database()
    from iam_project.worker_metrics import start_metrics_server

    start_metrics_server(settings.WORKER_METRICS_PORT)


@signals.beat_init.connect
def beat_start(**kwargs: object) -> None:
    from iam_project.startup import wait_for_database

    wait_for_database()


@signals.worker_process_shutdown.connect
def worker_child_exit(pid: int | None = None, **kwargs: object) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid())
