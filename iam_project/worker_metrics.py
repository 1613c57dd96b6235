"""The Celery worker's ``/metrics`` on ``WORKER_METRICS_PORT``: its processes' counters and the outbox gauges."""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST

logger = logging.getLogger(__name__)


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        from django.db import close_old_connections

        from iam_project.exposition import render

        if self.path.split("?")[0] not in ("/metrics", "/"):
            self.send_error(404)
            return
        try:
            body = render()
        finally:
            close_old_connections()
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE_LATEST)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # scrapes are not worth a log line
        return


def start_metrics_server(port: int, address: str = "0.0.0.0") -> ThreadingHTTPServer | None:
    if port <= 0:
        return None
    try:
        server = ThreadingHTTPServer((address, port), _Handler)
    except OSError as exc:
        logger.error("worker metrics server not started", extra={"port": port, "error": str(exc)})
        return None
    threading.Thread(target=server.serve_forever, name="worker-metrics", daemon=True).start()
    logger.info("worker metrics on /metrics", extra={"port": port})
    return server
