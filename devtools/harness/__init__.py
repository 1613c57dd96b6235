"""The one process harness of the tests' fixtures and the benchmarks (development tooling, never production).

* :mod:`.children` — :class:`Proc`: a child in its own process group that dies with its parent
  (``PR_SET_PDEATHSIG``, and an ``atexit`` hook that SIGTERM/SIGHUP reach too); ports and waiting.
* :mod:`.servers` — PostgreSQL, NATS, Redis and a Kafka-compatible broker on free ports.
* :mod:`.roles` — gunicorn, Celery worker and beat, ``manage.py``; their environment; HTTP to them.
* :mod:`.load` — the ``wrk`` driver and the CPU meter of the benchmarks.
"""

from devtools.harness.children import REPO, Proc, children_of, die_with_parent, free_port, port_open, wait_until
from devtools.harness.servers import KafkaServer, NatsServer, Postgres, RedisServer, redis_server_binary

__all__ = [
    "REPO",
    "KafkaServer",
    "NatsServer",
    "Postgres",
    "Proc",
    "RedisServer",
    "children_of",
    "die_with_parent",
    "free_port",
    "port_open",
    "redis_server_binary",
    "wait_until",
]
