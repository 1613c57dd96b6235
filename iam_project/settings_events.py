"""Event and relay settings: the event bus, the outbox relay and Celery (star-imported by settings.py).

A module of its own so that each concern's settings read in one place; every value comes from the
environment as in :mod:`iam_project.settings`.
"""

from __future__ import annotations

import environ

from core.config import ConfigError
from iam_project import startup

_env = environ.Env()

# --- events ---------------------------------------------------------------------------------------
IAM_EVENT_SOURCE = _env.str("EVENT_SOURCE", default="urn:citadel:iam-service")
NATS_STREAM_NAME = _env.str("NATS_STREAM_NAME", default="IAM_EVENTS")
NATS_SUBJECT_PREFIX = _env.str("NATS_SUBJECT_PREFIX", default="iam")
NATS_STREAM_REPLICAS = _env.int("NATS_STREAM_REPLICAS", default=1)
NATS_STREAM_MAX_AGE_SECONDS = _env.int("NATS_STREAM_MAX_AGE_SECONDS", default=7 * 24 * 3600)
NATS_DUPLICATE_WINDOW_SECONDS = _env.int("NATS_DUPLICATE_WINDOW_SECONDS", default=2 * 3600)
NATS_PUBLISH_TIMEOUT_SECONDS = _env.float("NATS_PUBLISH_TIMEOUT_SECONDS", default=5.0)
NATS_CONNECT_TIMEOUT_SECONDS = _env.float("NATS_CONNECT_TIMEOUT_SECONDS", default=2.0)
NATS_STREAM_MAX_MSG_SIZE = _env.int("NATS_STREAM_MAX_MSG_SIZE", default=-1)
# Kafka (EVENT_BUS_URL=kafka://…): one topic per deployment, keyed by aggregate id.
KAFKA_TOPIC = _env.str("KAFKA_TOPIC", default="iam.events")
KAFKA_TOPIC_PARTITIONS = _env.int("KAFKA_TOPIC_PARTITIONS", default=6)
KAFKA_TOPIC_REPLICATION_FACTOR = _env.int("KAFKA_TOPIC_REPLICATION_FACTOR", default=-1)  # -1: the broker's default
KAFKA_PUBLISH_TIMEOUT_SECONDS = _env.float("KAFKA_PUBLISH_TIMEOUT_SECONDS", default=5.0)
KAFKA_CONNECT_TIMEOUT_SECONDS = _env.float("KAFKA_CONNECT_TIMEOUT_SECONDS", default=2.0)
KAFKA_MAX_MESSAGE_BYTES = _env.int("KAFKA_MAX_MESSAGE_BYTES", default=1_000_000)
KAFKA_LINGER_MS = _env.int("KAFKA_LINGER_MS", default=5)
OUTBOX_RELAY_INTERVAL = _env.float("OUTBOX_RELAY_INTERVAL", default=1.0)
OUTBOX_RELAY_BATCH_SIZE = _env.int("OUTBOX_RELAY_BATCH_SIZE", default=500)
OUTBOX_MAX_ATTEMPTS = _env.int("OUTBOX_MAX_ATTEMPTS", default=8)
OUTBOX_BACKOFF_MAX_SECONDS = _env.float("OUTBOX_BACKOFF_MAX_SECONDS", default=300.0)
OUTBOX_RETENTION_HOURS = _env.int("OUTBOX_RETENTION_HOURS", default=168)
# The relay's lanes (docs/scaling.md): each event goes to crc32(aggregate id) mod OUTBOX_PARTITIONS;
# each partition has its own advisory lock, so up to that many relay runs publish at once. Changing it
# on a live system is safe (docs/runbook.md, "Changing OUTBOX_PARTITIONS"). 1 = one relay at a time.
OUTBOX_PARTITIONS = _env.int("OUTBOX_PARTITIONS", default=1)
# How many relay runs one beat tick or poke starts at most (one per idle partition with pending rows).
OUTBOX_RELAY_CONCURRENCY = _env.int("OUTBOX_RELAY_CONCURRENCY", default=4)
if not 1 <= OUTBOX_PARTITIONS <= 256:
    startup.fatal(ConfigError("OUTBOX_PARTITIONS", "must be between 1 and 256", str(OUTBOX_PARTITIONS)))
if OUTBOX_RELAY_CONCURRENCY < 1:
    startup.fatal(ConfigError("OUTBOX_RELAY_CONCURRENCY", "must be at least 1", str(OUTBOX_RELAY_CONCURRENCY)))

# --- Celery ---------------------------------------------------------------------------------------
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None  # a long Redis outage must not stop the worker: retry forever
REDIS_BROKER_TRANSPORT_OPTIONS: dict = {
    # A broker outage must not slow committed writes down: the on-commit poke gives up fast.
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.5,
    "socket_connect_timeout": 1,
    "socket_timeout": 2,
    # kombu's Redis ack emulation restores unacked messages while closing a lost connection, and
    # crashes the worker there (AttributeError in _connparams) when Redis restarts. Our tasks ack on
    # receipt (the relay is idempotent and beat re-sends it), so the emulation buys nothing.
    "ack_emulation": False,
}
CELERY_BROKER_TRANSPORT_OPTIONS: dict = dict(REDIS_BROKER_TRANSPORT_OPTIONS)
CELERY_BEAT_SCHEDULE = {
    "relay-outbox": {
        "task": "outbox.relay",
        "schedule": OUTBOX_RELAY_INTERVAL,
        # A tick that no worker took in time expires instead of piling up behind an outage.
        "options": {"expires": max(OUTBOX_RELAY_INTERVAL * 2, 2.0)},
    },
    "purge-published-outbox": {"task": "outbox.purge_published", "schedule": 3600.0, "options": {"expires": 600}},
    "purge-deleted-tenants": {"task": "tenants.purge_deleted", "schedule": 3600.0, "options": {"expires": 600}},
}
