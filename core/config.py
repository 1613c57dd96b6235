"""Configuration read from the environment, validated once at start-up.

Every value the runbook names (``DATABASE_URL``, ``EVENT_BUS_URL`` …) is parsed here. A missing or
malformed value raises :class:`ConfigError`, whose message names the variable and never contains a
password; the process entry points turn it into one FATAL log line and a non-zero exit.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit, urlunsplit

import environ

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("IAM_DATA_DIR", BASE_DIR / ".data"))

PRODUCTION = "production"
DEVELOPMENT = "development"
ENVIRONMENTS = (PRODUCTION, DEVELOPMENT)

POSTGRES_SCHEMES = ("postgres", "postgresql", "pgsql")
EVENT_BUS_SCHEMES = ("nats", "tls", "kafka")
KAFKA_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
# EVENT_BUS_URL query parameters of kafka:// -> librdkafka configuration properties.
KAFKA_URL_OPTIONS = {
    "security_protocol": "security.protocol",
    "sasl_mechanism": "sasl.mechanism",
    "ssl_ca_location": "ssl.ca.location",
    "tls_ca": "ssl.ca.location",
}
BROKER_SCHEMES = ("redis", "rediss", "amqp", "pyamqp", "filesystem", "memory")


class ConfigError(Exception):
    """A configuration value is missing or malformed. The message names the variable."""

    def __init__(self, variable: str, problem: str, value: str | None = None) -> None:
        self.variable = variable
        self.problem = problem
        self.value = redact_url(value) if value else None
        shown = f" (got {self.value!r})" if self.value else ""
        super().__init__(f"{variable}: {problem}{shown}")


def redact_url(value: str) -> str:
    """Return ``value`` with any password replaced by ``***`` (works on unparsable input too)."""
    redacted = re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", value)
    return re.sub(r"(?i)(password=)[^&\s]*", r"\1***", redacted)


def iam_env() -> str:
    value = os.environ.get("IAM_ENV", PRODUCTION).strip().lower() or PRODUCTION
    if value not in ENVIRONMENTS:
        raise ConfigError("IAM_ENV", f"must be one of {', '.join(ENVIRONMENTS)}", value)
    return value


def _split(variable: str, value: str, schemes: tuple[str, ...]) -> SplitResult:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as exc:
        raise ConfigError(variable, f"malformed URL: {exc}", value) from None
    if not parts.scheme:
        raise ConfigError(variable, "malformed URL: no scheme", value)
    if parts.scheme not in schemes:
        raise ConfigError(
            variable,
            f"unsupported scheme {parts.scheme!r} (supported: {', '.join(schemes)})",
            value,
        )
    return parts


def max_parallel_workers(value: str | None, role: str) -> int | None:
    """``DB_MAX_PARALLEL_WORKERS_PER_GATHER``: a number, or ``server`` (leave the server's setting).

    Unset: 0 for web processes (their requests run many short queries at once: a parallel plan for
    one takes cores from the others — a search's first page walked with two workers,
    docs/performance.md), the server's setting for the others."""
    chosen = value if value else ("0" if role == "web" else "server")
    if chosen == "server":
        return None
    if not chosen.isdigit() or int(chosen) > 1024:
        raise ConfigError("DB_MAX_PARALLEL_WORKERS_PER_GATHER", "must be a number from 0 to 1024, or server", chosen)
    return int(chosen)


def connection_settings(env: Any, role: str) -> dict[str, Any]:
    """The keywords of :func:`database_config` that the environment sets (``env``: an ``environ.Env``),
    the same for the primary and every replica of a role."""
    return {
        "statement_timeout_ms": env.int("DB_STATEMENT_TIMEOUT_MS", default=5000),
        "prepared_statements": env.bool("DB_PREPARED_STATEMENTS", default=True),
        "max_parallel_workers_per_gather": max_parallel_workers(
            env.str("DB_MAX_PARALLEL_WORKERS_PER_GATHER", default=""), role
        ),
    }


def database_config(
    value: str,
    *,
    application_name: str,
    statement_timeout_ms: int,
    prepared_statements: bool = True,
    max_parallel_workers_per_gather: int | None = None,
) -> dict[str, Any]:
    """Django ``DATABASES['default']`` from a ``DATABASE_URL`` (TCP or unix-socket form).

    ``prepared_statements``: the PIP's statements are prepared once per connection
    (``core.db.base.PreparingCursor``); off behind a pooler that cannot keep them (PgBouncer before
    1.21, or without ``max_prepared_statements``, in transaction mode).
    ``max_parallel_workers_per_gather``: the connection's setting (None: the server's)."""
    parts = _split("DATABASE_URL", value, POSTGRES_SCHEMES)
    query = dict(parse_qsl(parts.query))
    socket_dir = query.pop("host", "")
    if not (parts.hostname or socket_dir):
        raise ConfigError("DATABASE_URL", "no host (use host:port or ?host=/socket/dir)", value)
    name = unquote(parts.path.lstrip("/"))
    if not name:
        raise ConfigError("DATABASE_URL", "no database name in the path", value)
    clean = urlunsplit(parts._replace(query=""))
    config: dict[str, Any] = environ.Env.db_url_config(clean)  # django-environ is untyped
    config["HOST"] = socket_dir or config["HOST"]
    config["ENGINE"] = "core.db"  # PostgreSQL, counting operational failures
    options: dict[str, Any] = {key: val for key, val in query.items()}
    options.setdefault("application_name", application_name)
    options.setdefault("connect_timeout", "5")
    existing = options.get("options", "")
    options["options"] = f"{existing} -c statement_timeout={statement_timeout_ms}".strip()
    if max_parallel_workers_per_gather is not None:
        options["options"] += f" -c max_parallel_workers_per_gather={max_parallel_workers_per_gather}"
    # psycopg prepares nothing while this is None (Django's default). Django's own cursors bind on the
    # client, which psycopg never prepares, so 0 only lets the PreparingCursor's statements be prepared.
    options["prepare_threshold"] = 0 if prepared_statements else None
    config["OPTIONS"] = options
    return config


@dataclass(frozen=True)
class EventBusConfig:
    url: str
    servers: list[str]
    user: str | None
    password: str | None
    token: str | None
    tls: bool
    tls_ca_file: str | None
    kind: str = "nats"  # "nats" or "kafka": which EventBusAdapter serves it
    # kafka only: librdkafka security properties (security.protocol, sasl.*, ssl.ca.location)
    kafka_options: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:  # never print the password
        return f"EventBusConfig(kind={self.kind!r}, servers={[redact_url(s) for s in self.servers]!r}, tls={self.tls})"


def event_bus_config(value: str, environ: Mapping[str, str] | None = None) -> EventBusConfig:
    """Parse ``EVENT_BUS_URL``: ``nats://[user:pass@]host:port[,host:port…][?tls_ca=/path]`` or
    ``kafka://[user:pass@]host:9092[,host2:9092][?security_protocol=SASL_SSL&sasl_mechanism=…]``."""
    if value.startswith("kafka://"):
        return kafka_config(value, os.environ if environ is None else environ)
    first, *rest = value.split(",")
    parts = _split("EVENT_BUS_URL", first, EVENT_BUS_SCHEMES)
    if not parts.hostname:
        raise ConfigError("EVENT_BUS_URL", "malformed URL: no host", value)
    servers = [urlunsplit(parts._replace(query=""))]
    for extra in rest:
        extra_parts = _split(
            "EVENT_BUS_URL", extra if "://" in extra else f"{parts.scheme}://{extra}", EVENT_BUS_SCHEMES[:2]
        )
        if not extra_parts.hostname:
            raise ConfigError("EVENT_BUS_URL", "malformed URL: no host", value)
        servers.append(urlunsplit(extra_parts._replace(query="")))
    query = dict(parse_qsl(parts.query))
    return EventBusConfig(
        url=value,
        servers=servers,
        user=unquote(parts.username) if parts.username and parts.password else None,
        password=unquote(parts.password) if parts.password else None,
        token=unquote(parts.username) if parts.username and not parts.password else None,
        tls=parts.scheme == "tls" or "tls_ca" in query,
        tls_ca_file=query.get("tls_ca"),
    )


def kafka_config(value: str, environ: Mapping[str, str]) -> EventBusConfig:
    """``kafka://[user:pass@]host:9092[,host2:9092][?security_protocol=…&sasl_mechanism=…&ssl_ca_location=…]``.

    SASL credentials come from the URL or, when it has none, from ``KAFKA_SASL_USERNAME`` and
    ``KAFKA_SASL_PASSWORD`` (so that the password can live in a Secret of its own).
    """
    rest_of_url = value[len("kafka://") :]
    authority, _, query_text = rest_of_url.partition("?")
    credentials, _, hosts = authority.rpartition("@")
    servers = []
    for host in hosts.split(","):
        parts = _split("EVENT_BUS_URL", f"kafka://{host}", ("kafka",))
        if not parts.hostname or parts.path or not parts.port:
            raise ConfigError("EVENT_BUS_URL", "malformed URL: each broker must be host:port", value)
        servers.append(f"{parts.hostname}:{parts.port}")
    query = dict(parse_qsl(query_text, keep_blank_values=True))
    unknown = sorted(set(query) - set(KAFKA_URL_OPTIONS))
    if unknown:
        raise ConfigError(
            "EVENT_BUS_URL", f"unknown kafka:// parameter {unknown[0]!r} (known: {', '.join(KAFKA_URL_OPTIONS)})", value
        )
    options = {KAFKA_URL_OPTIONS[key]: val for key, val in query.items()}
    protocol = options.setdefault("security.protocol", "PLAINTEXT").upper()
    options["security.protocol"] = protocol
    if protocol not in KAFKA_SECURITY_PROTOCOLS:
        raise ConfigError(
            "EVENT_BUS_URL", f"security_protocol must be one of {', '.join(KAFKA_SECURITY_PROTOCOLS)}", value
        )
    user, _, password = credentials.partition(":")
    user, password = unquote(user), unquote(password)
    if not user:
        user = environ.get("KAFKA_SASL_USERNAME", "")
        password = environ.get("KAFKA_SASL_PASSWORD", "")
    if protocol.startswith("SASL_"):
        mechanism = options.get("sasl.mechanism", "").upper()
        if mechanism not in KAFKA_SASL_MECHANISMS:
            raise ConfigError(
                "EVENT_BUS_URL", f"sasl_mechanism must be one of {', '.join(KAFKA_SASL_MECHANISMS)}", value
            )
        if not (user and password):
            raise ConfigError(
                "EVENT_BUS_URL",
                "SASL needs a user and password (in the URL or KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD)",
                value,
            )
        options.update({"sasl.mechanism": mechanism, "sasl.username": user, "sasl.password": password})
    elif user or "sasl.mechanism" in options:
        raise ConfigError(
            "EVENT_BUS_URL", "credentials or sasl_mechanism need security_protocol=SASL_SSL or SASL_PLAINTEXT", value
        )
    return EventBusConfig(
        url=value,
        servers=servers,
        user=user or None,
        password=password or None,
        token=None,
        tls=protocol in ("SSL", "SASL_SSL"),
        tls_ca_file=options.get("ssl.ca.location"),
        kind="kafka",
        kafka_options=options,
    )


def broker_url(value: str) -> str:
    _split("CELERY_BROKER_URL", value, BROKER_SCHEMES)
    return value


def redis_url(value: str) -> str:
    _split("REDIS_URL", value, ("redis", "rediss", "unix"))
    return value
