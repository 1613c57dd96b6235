"""The web role as deployed, for the benchmarks: ``gunicorn -c iam_project/gunicorn.conf.py iam_project.wsgi``."""

from __future__ import annotations

from pathlib import Path

from devtools.harness import free_port
from devtools.harness.roles import gunicorn, wait_for_http


class Gunicorn:
    """gunicorn with ``workers`` sync workers on a free port, serving ``health`` before it is returned."""

    def __init__(self, env: dict[str, str], workers: int, log_file: Path, health: str = "/healthz") -> None:
        self.port = free_port()
        self.workers = workers
        metrics = log_file.parent / f"{log_file.stem}-metrics"
        metrics.mkdir(exist_ok=True)
        env = {**env, "PORT": str(self.port), "GUNICORN_WORKERS": str(workers), "IAM_ROLE": "web"}
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)
        self.proc = gunicorn(log_file.parent, env, port=self.port, workers=workers, name=log_file.stem).start()
        self.process = self.proc.process
        wait_for_http(self.proc, self.port, health, timeout=60, workers=workers)

    def worker_pids(self) -> list[int]:
        return sorted(self.proc.children())

    def stop(self) -> None:
        self.proc.stop(timeout=30)  # SIGTERM: the master stops its workers (graceful_timeout 25 s)
