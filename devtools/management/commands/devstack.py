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

from core.config import DATA_DIR
from devtools.demo import demo_seed
from iam_project.roles import role_command


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _signal_group(child: subprocess.Popen, sig: int) -> None:
    """Signal the child's process group (its own session: the child and what it forked)."""
    if child.poll() is None:
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            pass  # it ended in between


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
        password = self._superuser()
        bin_dir = Path(sys.executable).parent
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        processes = {"web": role_command("web", "--bind", f"127.0.0.1:{port}", "--workers", "2", bin_dir=bin_dir)}
        if not no_worker:
            processes["worker"] = role_command("worker", "--concurrency", "2", bin_dir=bin_dir)
            processes["beat"] = role_command(
                "beat", "--schedule", str(DATA_DIR / "celerybeat-schedule"), bin_dir=bin_dir
            )
        # Ctrl-C reaches this process only (the children have sessions of their own), which stops
        # them in order; `kill` (SIGTERM) does the same.
        signal.signal(signal.SIGTERM, _interrupt)
        signal.signal(signal.SIGINT, _interrupt)  # also where a shell started us with SIGINT ignored
        children = {
            name: subprocess.Popen(
                command, env={**env, "IAM_ROLE": name}, cwd=settings.BASE_DIR, start_new_session=True
            )
            for name, command in processes.items()
        }
        try:
            self._wait_ready(port, children)
            self.stdout.write(
                f"\niam-service is up:  console http://127.0.0.1:{port}/admin/   API http://127.0.0.1:{port}/api/v1/"
                f"   docs http://127.0.0.1:{port}/api/docs/\n"
                f"event bus {settings.EVENT_BUS.servers[0]} (also in {DATA_DIR / f'{settings.EVENT_BUS.kind}.url'})"
                f"   database {settings.DATABASES['default']['HOST']}\n"
                "Ctrl-C stops web, worker and beat (PostgreSQL and NATS keep running: `make stop` stops them)."
            )
            if password:
                self.stdout.write(self.style.WARNING(f"Console user: admin / {password}   (shown once)"))
            else:
                self.stdout.write("Console user: admin (a new password: make admin-password)")
            while all(child.poll() is None for child in children.values()):
                time.sleep(0.5)
            dead = [name for name, child in children.items() if child.poll() is not None]
            raise CommandError(f"{', '.join(dead)} exited")
        except KeyboardInterrupt:
            self._stop(children)
            self.stdout.write("Stopped web, worker and beat.")
        finally:
            self._stop(children)

    @staticmethod
    def _stop(children: dict[str, subprocess.Popen]) -> None:
        """SIGTERM to each main process (gunicorn's and Celery's graceful shutdown: a worker finishes the
        task in hand, its pool children exit with it), SIGKILL to the whole group after 30 s.

        Not SIGTERM to the group: a Celery pool child killed under its parent fails its task with
        ``WorkerLostError``."""
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children.values():
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                _signal_group(child, signal.SIGKILL)
                child.wait(5)

    def _superuser(self) -> str | None:
        """A new console superuser's password, or None when one exists already."""
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            return None
        password = secrets.token_urlsafe(12)
        User.objects.create_superuser("admin", "admin@localhost", password)
        return password

    def _wait_ready(self, port: int, children: dict[str, subprocess.Popen]) -> None:
        """Until web answers /healthz and the worker answers a ping, so that the banner comes last."""
        deadline = time.monotonic() + 120

        def web_ready() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
                    return response.status == 200
            except OSError:
                return False

        def worker_ready() -> bool:
            from iam_project.celery import app

            return "worker" not in children or bool(app.control.ping(timeout=1.0))

        for name, ready in (("web", web_ready), ("worker", worker_ready)):
            while not ready():
                dead = [child for child, process in children.items() if process.poll() is not None]
                if dead:
                    raise CommandError(f"{', '.join(dead)} exited during start-up")
                if time.monotonic() > deadline:
                    raise CommandError(f"{name} was not ready within 120 s")
                time.sleep(0.3)
