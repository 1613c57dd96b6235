"""The runbook's metrics, defined once. Names are a contract (docs/runbook.md, deploy/prometheus/)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "http_requests_total", "HTTP requests handled, by method, route template and status.", ["method", "route", "status"]
)
HTTP_REQUEST_DURATION = Histogram(
    "http_request_duration_seconds",
    "Time to handle an HTTP request, by method and route template.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
DATABASE_ERRORS = Counter(
    "database_errors_total", "Operational database failures (connection refused or lost, timeouts, deadlocks)."
)
EVENT_BUS_ERRORS = Counter("event_bus_errors_total", "Failures publishing outbox events to the event bus.", ["kind"])
RELAY_PUBLISHED = Counter("outbox_relay_published_total", "Outbox events acknowledged by the event bus.")
RELAY_RUNS = Counter(
    "outbox_relay_runs_total",
    "Relay runs by outcome: published, idle, busy (every lane with work held by another run), "
    "event_error (an event rejected), transport_error (the bus unreachable).",
    ["outcome"],
)
RELAY_LAST_SUCCESS = Gauge(
    "outbox_relay_last_success_timestamp_seconds",
    "Unix time of the last relay run that reached the event bus without a transport failure.",
    multiprocess_mode="max",
)
AUTH_FAILURES = Counter(
    "auth_failures_total",
    "Failed authentications, by door: console (the login form), api_basic (HTTP Basic), api_key (Bearer).",
    ["door"],
)
# Read replicas (core/db/replicas.py): per replica alias, as each web process last checked it.
DATABASE_REPLICA_LAG = Gauge(
    "database_replica_lag_seconds",
    "How far a read replica's replay is behind (0 when it has replayed all it received), by replica.",
    ["replica"],
    multiprocess_mode="livemax",
)
DATABASE_REPLICA_UP = Gauge(
    "database_replica_up",
    "1 when a read replica is in use (answers, is a standby, lags at most REPLICA_MAX_LAG_SECONDS), else 0.",
    ["replica"],
    multiprocess_mode="livemin",
)
DATABASE_REPLICA_SKIPPED = Counter(
    "database_replica_skipped_total",
    "Health checks that found a replica unusable, by replica and reason (down, lag, not_standby).",
    ["replica", "reason"],
)
DATABASE_READS = Counter(
    "database_reads_total",
    "Requests whose reads went to the primary or a replica (counted when replicas are configured).",
    ["target"],
)
# The PIP's near cache (core/near_cache.py, ADR 0011).
NEAR_CACHE_LEASES = Gauge(
    "pip_near_cache_leases",
    "Web workers holding a near-cache lease: answering cached PIP lookups from memory.",
    multiprocess_mode="livesum",
)
NEAR_CACHE_PUBLISH = Histogram(
    "pip_near_cache_publish_seconds",
    "Time a write waited until every worker holding a lease had acknowledged its change.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
