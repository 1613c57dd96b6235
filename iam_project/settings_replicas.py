"""Read-replica settings: ``DATABASE_REPLICA_URLS`` and the router (star-imported by settings.py).

Empty ``DATABASE_REPLICA_URLS`` (the default) is one database, exactly as before: no alias, no
router, no extra query. Each URL becomes the alias ``replica_<n>`` (from 1), configured like the
primary (``core.config.database_config``: application name ``iam-<role>-replica``, statement timeout,
``connect_timeout`` 2 s unless the URL says otherwise). docs/scaling.md, "Reads past one database".
"""

from __future__ import annotations

import os
from typing import Any

import environ

from core.config import ConfigError, connection_settings, database_config
from iam_project import startup

_env = environ.Env()

REPLICA_DATABASES: dict[str, dict[str, Any]] = {}
try:
    for _number, _url in enumerate((u.strip() for u in _env.str("DATABASE_REPLICA_URLS", default="").split(",")), 1):
        if not _url:
            continue
        try:
            _role = os.environ.get("IAM_ROLE", "web")
            _replica = database_config(
                _url, application_name=f"iam-{_role}-replica", **connection_settings(_env, _role)
            )
        except ConfigError as _bad:
            raise ConfigError("DATABASE_REPLICA_URLS", _bad.problem, _url) from None
        if "connect_timeout=" not in _url:
            _replica["OPTIONS"]["connect_timeout"] = "2"  # a dead replica must not hold a request for long
        _replica.update(
            {
                "CONN_MAX_AGE": _env.int("DB_CONN_MAX_AGE", default=60),
                "CONN_HEALTH_CHECKS": True,
                "ATOMIC_REQUESTS": False,
                "TEST": {"MIRROR": "default"},  # the test database's replica is the test database
            }
        )
        REPLICA_DATABASES[f"replica_{_number}"] = _replica
    # Skip a replica whose replay is further behind than this (seconds); checked per process at most
    # every REPLICA_CHECK_SECONDS.
    REPLICA_MAX_LAG_SECONDS = _env.float("REPLICA_MAX_LAG_SECONDS", default=10.0)
    REPLICA_CHECK_SECONDS = _env.float("REPLICA_CHECK_SECONDS", default=1.0)
    if REPLICA_MAX_LAG_SECONDS < 0 or REPLICA_CHECK_SECONDS <= 0:
        raise ConfigError("REPLICA_MAX_LAG_SECONDS", "must be >= 0 (and REPLICA_CHECK_SECONDS > 0)")
except ConfigError as _error:
    startup.fatal(_error)

DATABASE_REPLICAS = list(REPLICA_DATABASES)
# Read from the primary whatever the request: logins, sessions and API keys are never served stale.
REPLICA_PRIMARY_APPS = frozenset({"admin", "auth", "axes", "contenttypes", "sessions", "access"})
DATABASE_ROUTERS = ["core.db.replicas.ReplicaRouter"] if DATABASE_REPLICAS else []
