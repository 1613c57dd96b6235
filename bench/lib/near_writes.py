"""How long a write waits for the web workers' acknowledgements (the near cache, ADR 0011).

Each sample is one change published as a write publishes it (``core.near_cache.publish_with``: the
numbered message, then the wait until every worker holding a lease has acknowledged it), against the
benchmark's Redis while the gunicorn workers hold their leases: idle, then while wrk drives the
cached lookup at full load. The name published matches no entry, so no worker loses a value.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable

import redis as redis_py

from core import near_cache


def publish_waits(url: str, count: int, during: Callable[[], object] | None = None) -> dict:
    """p50/p99/max ms of ``count`` publishes; with ``during``, made while it runs (a wrk run)."""
    client = redis_py.Redis.from_url(url)
    leases = client.zcard(f":1:{near_cache.LEASES}")
    waits: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while len(waits) < count and not stop.is_set():
            started = time.perf_counter()
            near_cache.publish_with(client, lambda name: f":1:{name}", ["pip:sg:bench:no-such-subject"])
            waits.append(time.perf_counter() - started)
            time.sleep(0.005)

    if during is None:
        sample()
    else:
        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        during()
        stop.set()
        thread.join(timeout=30)
    client.close()
    ordered = sorted(waits)
    return {
        "leases": leases,
        "samples": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 2) if ordered else None,
        "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 2) if ordered else None,
        "max_ms": round(ordered[-1] * 1000, 2) if ordered else None,
    }
