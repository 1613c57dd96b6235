"""``manage.py devstack``: the whole service on one machine (what ``make run`` starts).

PostgreSQL and NATS JetStream come from PyPI wheels (started by ``manage.py`` in development);
the Celery broker is kombu's filesystem transport under ``.data/``. This command migrates, seeds
the demo tenant, creates a console superuser (password printed once), then runs gunicorn, a Celery
worker and Celery beat until Ctrl-C.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from iam_project.config import DATA_DIR
from iam_project.demo import demo_seed


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


class Command(BaseCommand):
    help = "Run web, worker and beat against the embedded PostgreSQL, NATS and broker (development)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8000)))
        parser.add_argument("--no-worker", action="store_true", help="Run web only.")

    def handle(self, *args: object, port: int, no_worker: bool, **options: object) -> None:
        if not settings.DEVELOPMENT_MODE:
            raise CommandError("devstack is for IAM_ENV=development")
        call_command("migrate", interactive=False, verbosity=0)
        if demo_seed():
            self.stdout.write("Seeded the demo tenant 'demo' with attribute definitions and 3 users.")
        self._superuser()
        bin_dir = Path(sys.executable).parent
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        processes = {
            "web": [
                str(bin_dir / "gunicorn"), "-c", str(settings.BASE_DIR / "iam_project" / "gunicorn.conf.py"),
                "--bind", f"127.0.0.1:{port}", "--workers", "2", "iam_project.wsgi",
            ],
        }  # fmt: skip
        if not no_worker:
            processes["worker"] = [
                str(bin_dir / "celery"),
                "-A",
                "iam_project",
                "worker",
                "--loglevel",
                "INFO",
                "--concurrency",
                "2",
            ]
            processes["beat"] = [
                str(bin_dir / "celery"), "-A", "iam_project", "beat", "--loglevel", "INFO",
                "--schedule", str(DATA_DIR / "celerybeat-schedule"),
            ]  # fmt: skip
        signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the children as Ctrl-C does
        children = {
            name: subprocess.Popen(cmd, env={**env, "IAM_ROLE": name}, cwd=settings.BASE_DIR)
            for name, cmd in processes.items()
        }
        try:
            self._wait_ready(port, children)
            self.stdout.write(
                self.style.SUCCESS(
                    f"\niam-service is up:  console http://127.0.0.1:{port}/admin/   API http://127.0.0.1:{port}/api/v1/"
                    f"   docs http://127.0.0.1:{port}/api/docs/\n"
                    f"event bus {settings.EVENT_BUS.servers[0]}   database {settings.DATABASES['default']['HOST']}\n"
                    "Ctrl-C stops web, worker and beat (PostgreSQL and NATS keep running: `make stop` stops them).\n"
                )
            )
            while all(child.poll() is None for child in children.values()):
                time.sleep(0.5)
            dead = [name for name, child in children.items() if child.poll() is not None]
            raise CommandError(f"{', '.join(dead)} exited")
        except KeyboardInterrupt:
            pass
        finally:
            for child in children.values():
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
            for child in children.values():
                try:
                    child.wait(15)
                except subprocess.TimeoutExpired:
                    child.kill()

    def _superuser(self) -> None:
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            self.stdout.write("A console superuser exists already (password as printed when it was created).")
            return
        password = secrets.token_urlsafe(12)
        User.objects.create_superuser("admin", "admin@localhost", password)
        self.stdout.write(self.style.WARNING(f"Console superuser created: admin / {password}   (shown once)"))

    def _wait_ready(self, port: int, children: dict[str, subprocess.Popen]) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if children["web"].poll() is not None:
                raise CommandError("web exited during start-up")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise CommandError("web did not answer /healthz within 120 s")
