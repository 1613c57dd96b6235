"""The Celery app: ``celery -A iam_project worker`` and ``celery -A iam_project beat``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from celery import Celery

if Path(sys.argv[0]).name == "celery":
    # Each role connects to PostgreSQL with its own application_name (iam-worker, iam-beat).
    os.environ.setdefault("IAM_ROLE", "beat" if "beat" in sys.argv else "worker")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "iam_project.settings")

app = Celery("iam_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
