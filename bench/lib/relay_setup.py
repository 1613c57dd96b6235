"""The Django settings the relay benchmark's processes run with (the bench itself and its writers)."""

from __future__ import annotations

import os


def setup_django(database_url: str, nats_url: str, stream: str, prefix: str, *, migrate: bool = True) -> None:
    os.environ.update(
        {
            "IAM_ENV": "development",
            "DJANGO_SETTINGS_MODULE": "iam_project.settings",
            "DATABASE_URL": database_url,
            "EVENT_BUS_URL": nats_url,
            "CELERY_BROKER_URL": "memory://",  # on-commit pokes reach no worker: the bench drives the relay
            "NATS_STREAM_NAME": stream,
            "NATS_SUBJECT_PREFIX": prefix,
            "KAFKA_TOPIC": stream,  # kafka: one topic per run (letters, digits and _ are valid names)
            "LOG_LEVEL": "WARNING",
            "DEBUG": "false",  # DEBUG would keep every query in memory
            # the backlog is written by one COPY: on a busy machine it outlasts the service's 5 s guard
            "DB_STATEMENT_TIMEOUT_MS": "120000",
        }
    )
    import django

    django.setup()
    from django.core.management import call_command

    if migrate:
        call_command("migrate", verbosity=0, interactive=False)
