"""How each role of the one image starts: the single source of truth for its start command.

The Dockerfile's ``CMD``, docker-compose.yml, the Kubernetes manifests, the README and
docs/runbook.md name these commands; ``tests/deploy/test_manifests.py`` checks each of them against
this table, and the process harness of the tests and benchmarks (``devtools/harness/roles.py``) starts
the roles from it. A deployment may append flags to the worker's and beat's command (``--concurrency``),
never change what is here.
"""

from __future__ import annotations

from pathlib import Path

ROLES: dict[str, tuple[str, ...]] = {
    "web": ("gunicorn", "-c", "iam_project/gunicorn.conf.py", "iam_project.wsgi"),
    "worker": ("celery", "-A", "iam_project", "worker", "--loglevel", "INFO"),
    # beat keeps its schedule state in a file: /tmp is writable where the root filesystem is not.
    "beat": ("celery", "-A", "iam_project", "beat", "--loglevel", "INFO", "--schedule", "/tmp/celerybeat-schedule"),
    "migrate": ("python", "manage.py", "migrate", "--noinput"),
}

# Roles whose deployments may append flags (the worker's --concurrency); web and migrate take their
# settings from the environment only (PORT, GUNICORN_WORKERS, ...), so their deployed command is exact.
EXTENSIBLE = frozenset({"worker", "beat"})


def role_command(role: str, *flags: str, bin_dir: Path | str | None = None) -> list[str]:
    """The argv of ``role`` with ``flags`` appended; ``bin_dir`` resolves the program in a virtualenv."""
    program, *arguments = ROLES[role]
    if bin_dir is not None:
        program = str(Path(bin_dir) / program)
    return [program, *arguments, *flags]
