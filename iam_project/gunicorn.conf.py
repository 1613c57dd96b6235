"""Gunicorn settings for the web role.

Run as ``gunicorn -c iam_project/gunicorn.conf.py iam_project.wsgi``. Every value comes from the
environment so that one image serves every environment (see docs/runbook.md):

``PORT`` (8000), ``GUNICORN_WORKERS`` (2 * usable cores + 1), ``GUNICORN_TIMEOUT`` (30 s),
``LOG_LEVEL`` (INFO), ``PROMETHEUS_MULTIPROC_DIR`` (metrics shared across worker processes).
"""

from __future__ import annotations

import math
import os
import shutil
import sys
from pathlib import Path

from gunicorn import glogging  # type: ignore[import-untyped]  # gunicorn ships no types

# Sets the PostgreSQL application_name (iam-web) before Django's settings are imported by a worker.
os.environ.setdefault("IAM_ROLE", "web")
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # Several workers serve /metrics in turn: without a shared directory each would show its own counts.
    import tempfile

    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="iam-web-metrics-")


def _int_from_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        # The master has not configured logging yet: one plain line, then stop.
        sys.stderr.write(f"FATAL: {name} must be an integer, got {raw!r}\n")
        raise SystemExit(1) from None
    if value < 1:
        sys.stderr.write(f"FATAL: {name} must be at least 1, got {value}\n")
        raise SystemExit(1)
    return value


def _cgroup_cpu_limit() -> float | None:
    """The container's CPU limit in cores (cgroup v2 or v1), or None when unlimited."""
    try:  # cgroup v2: "<quota> <period>" or "max <period>"
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        quota_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return None if quota_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None


def usable_cores() -> int:
    """Cores this process may use: the CPU affinity mask, capped by the cgroup CPU limit.

    ``os.cpu_count()`` reports the node's cores, so a pod limited to 1 CPU on a 64-core node would
    otherwise start 129 workers and be OOM-killed.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    limit = _cgroup_cpu_limit()
    if limit is not None:
        cores = min(cores, max(1, math.ceil(limit)))
    return max(1, cores)


# --- server socket -------------------------------------------------------------------------------
bind = f"0.0.0.0:{_int_from_env('PORT', 8000)}"

# --- workers -------------------------------------------------------------------------------------
workers = _int_from_env("GUNICORN_WORKERS", 2 * usable_cores() + 1)
worker_class = "sync"
timeout = _int_from_env("GUNICORN_TIMEOUT", 30)
# Below Kubernetes' terminationGracePeriodSeconds (30 s), of which preStop's `sleep 5` uses 5 s:
# in-flight requests finish before the kubelet sends SIGKILL.
graceful_timeout = 25
# The sync worker closes the connection after every response, so this only matters if
# worker_class changes; kept a little above typical load-balancer probing intervals.
keepalive = 5
# Heartbeat files of the workers: /tmp is the writable emptyDir/tmpfs (the root filesystem is
# read-only in Kubernetes).
worker_tmp_dir = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None

# preload_app stays False: Django opens database connections, the NATS/Celery clients and the
# Prometheus multiprocess value files lazily per process. Loading the app in the master and forking
# would share those sockets and file handles between workers (corrupted protocol streams) and tie
# every worker's metrics to the master's pid. Each worker imports the app itself instead; a worker
# that cannot start halts the master (see worker_exit below), so a bad configuration still ends in
# a non-zero exit and a CrashLoopBackOff with the FATAL line in `kubectl logs --previous`.
preload_app = False

# gunicorn 27 otherwise opens a control socket under ~/.gunicorn, which does not exist (and is not
# writable) for uid 10001 on a read-only root filesystem. Same as `--no-control-socket`.
control_socket_disable = True

# Requests arrive from a TLS-terminating ingress / load balancer in the cluster; trust its
# X-Forwarded-* headers (the app decides what to do with them via SECURE_PROXY_SSL_HEADER).
forwarded_allow_ips = "*"

# --- logging -------------------------------------------------------------------------------------
# No access log: the app logs every request itself as JSON (method, route, status, duration,
# request id). Gunicorn's own messages go to stdout as JSON as well.
accesslog = None


class Logger(glogging.Logger):
    """gunicorn's logger, whose access log is on only when ``accesslog`` names a file.

    gunicorn deems its access log on whenever ``logconfig_dict`` is set (as below), and then builds
    every request's log atoms (the environ, request and response headers) for a logger that drops
    them (``gunicorn.access`` at CRITICAL): work on every request, for nothing.
    """

    def access(self, resp, req, environ, request_time):
        if self.cfg.accesslog:  # an operator's --access-logfile: as gunicorn does
            super().access(resp, req, environ, request_time)


logger_class = Logger
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "INFO").lower()
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    # Replaces gunicorn's default root handler; Django's LOGGING takes over inside each worker.
    "root": {"level": os.environ.get("LOG_LEVEL", "INFO").upper(), "handlers": ["stdout"]},
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s",
            # Same field names as the app's JSON lines (time, level, logger, message).
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
            "datefmt": "%Y-%m-%dT%H:%M:%S%z",
            "static_fields": {"component": "gunicorn", "role": "web"},
        }
    },
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stdout",
        }
    },
    "loggers": {
        "gunicorn.error": {
            "handlers": ["stdout"],
            "level": os.environ.get("LOG_LEVEL", "INFO").upper(),
            "propagate": False,
        },
        # Any logconfig_dict switches gunicorn's access log on: silence it here (see accesslog).
        "gunicorn.access": {"handlers": [], "level": "CRITICAL", "propagate": False},
    },
}


# --- hooks ---------------------------------------------------------------------------------------
def on_starting(server):
    """Start every run with an empty PROMETHEUS_MULTIPROC_DIR.

    The directory is an emptyDir that survives container restarts within a pod; files left by the
    previous master's workers would otherwise be summed into the new counters. Only the contents are
    removed: the directory itself may be a mount point.
    """
    Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)
    _check_configuration_and_database()  # first: its connection writes metric files, emptied below
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    for entry in path.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    server.log.info("Emptied PROMETHEUS_MULTIPROC_DIR %s", directory)


def _check_configuration_and_database():
    """Fail fast in the master: settings (FATAL line naming the variable) and a reachable database.

    Both exit with code 3 before any worker starts, within the start-up retry budget of
    ``iam_project.startup.wait_for_database``.
    """
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "iam_project.settings")
    import django

    django.setup()
    from iam_project.startup import wait_for_database

    wait_for_database()


def child_exit(server, worker):
    """Drop a dead worker's live gauges from the multiprocess metrics (prometheus_client docs)."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


# Gunicorn halts the master only when a worker exits with code 3 (WORKER_BOOT_ERROR) or 4
# (APP_LOAD_ERROR); any other exit code is respawned forever. A start-up failure raised as
# SystemExit (e.g. the app's "FATAL: DATABASE_URL ..." check calling sys.exit(1)) would therefore
# loop inside one healthy-looking container.
_WORKER_BOOT_ERROR = 3


def worker_exit(server, worker):
    """Turn any exit of a worker that never booted into WORKER_BOOT_ERROR, halting the master.

    A worker told to stop while booting (alive is False: SIGQUIT/SIGINT from a shutting-down master)
    exits as usual. A booted worker writes the PII read counts it still holds (access/pii_audit.py)
    and gives up its near cache's lease, so that no write waits for it (core/near_cache.py).
    """
    if getattr(worker, "booted", True):
        from access.pii_audit import pii_reads_flush
        from core import near_cache

        pii_reads_flush()
        near_cache.stop()
        return
    if not getattr(worker, "alive", True):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_WORKER_BOOT_ERROR)
