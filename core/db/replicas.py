"""Reads past one database: which connection a read uses, the replicas' health, the router.

``DATABASE_REPLICA_URLS`` adds the aliases ``replica_1`` … to ``DATABASES`` (``iam_project/
settings_replicas.py``). A request that only reads (the PIP's lookups, API ``GET``s, console pages)
runs inside a :class:`ReadScope`; its reads go to one healthy replica, chosen once per request:

* a replica is healthy when it answers, is a standby, and lags at most ``REPLICA_MAX_LAG_SECONDS``
  — checked at most every ``REPLICA_CHECK_SECONDS`` per process (one query), never per request;
* a read with a consistency token (``core/db/tokens.py``) goes only to a replica whose replay
  position has reached the token's LSN (one more cheap query when the last check does not say so);
* ``Consistency: full``, a read inside a transaction, a read after a write of the same request and
  the apps in ``REPLICA_PRIMARY_APPS`` (logins, sessions, API keys: never stale) use the primary;
* with no healthy replica the primary answers; a replica that fails during a request is marked down
  and the request is answered again from the primary (:func:`answered`), never a 5xx for it.

Outside a scope (writes, Celery, commands) and with no replica configured, everything is the primary
(``default``), at no extra cost: no router is installed and :func:`read_connection` is ``connection``.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper

from core import metrics
from core.db.tokens import lsn_value

logger = logging.getLogger("iam.replicas")
R = TypeVar("R")

HEALTH = """
    SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text,
           CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
                ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0) END
"""
REPLAYED = "SELECT pg_last_wal_replay_lsn()::text"
PRIMARY_LSN = "SELECT pg_current_wal_insert_lsn()::text"


@dataclass
class ReadScope:
    """One request's reading: the freshness it asked for, and the database it was given."""

    min_lsn: int = 0  # a consistency token's LSN: never read a state older than this
    full: bool = False  # ``Consistency: full``: the primary
    replicas: bool = False  # a read-only request, replicas configured
    wrote: bool = False  # the request wrote: its later reads see its write (the primary)
    alias: str | None = None  # the database of this request's reads, once chosen
    served_lsn: int = 0  # a lower bound of the replay position of that replica
    failed: bool = False  # the chosen replica failed during the request
    commit_lsn: int = 0  # the primary's WAL position after this request's last commit

    def pin_primary(self) -> None:
        self.replicas, self.alias, self.failed = False, DEFAULT_DB_ALIAS, False


_scope: ContextVar[ReadScope | None] = ContextVar("iam_read_scope", default=None)


def current_scope() -> ReadScope | None:
    return _scope.get()


def enter(scope: ReadScope) -> Any:
    return _scope.set(scope)


def leave(reset: Any) -> None:
    _scope.reset(reset)


def configured() -> bool:
    return bool(settings.DATABASE_REPLICAS)


def read_alias() -> str:
    """The database this read uses (``default`` unless the request may read from a replica)."""
    scope = _scope.get()
    if scope is None or scope.alias == DEFAULT_DB_ALIAS:
        return DEFAULT_DB_ALIAS
    if not scope.replicas or scope.wrote or in_transaction():
        return DEFAULT_DB_ALIAS
    if scope.alias is None:
        chosen = None if scope.full else choose(scope.min_lsn)
        scope.alias, scope.served_lsn = chosen if chosen is not None else (DEFAULT_DB_ALIAS, 0)
        metrics.DATABASE_READS.labels(target="primary" if chosen is None else "replica").inc()
    return scope.alias


def in_transaction() -> bool:
    """Inside a transaction on the primary (its reads must see its writes). A test case's own
    transactions, which stand in for committed ones, do not count."""
    return connection.in_atomic_block and any(
        not getattr(block, "_from_testcase", False) for block in connection.atomic_blocks
    )


def read_connection() -> BaseDatabaseWrapper:
    """The connection of a raw-SQL read (the PIP's selectors): ``connection`` outside a read scope."""
    if _scope.get() is None:
        return connection
    return connections[read_alias()]


def answered(scope: ReadScope, respond: Callable[[], R]) -> R:
    """``respond()``, once more from the primary if the replica it read from failed meanwhile."""
    try:
        result = respond()
    except Exception:
        if not scope.failed:
            raise
        scope.pin_primary()
        return respond()
    if scope.failed:
        scope.pin_primary()
        result = respond()
    return result


def replica_floor() -> int | None:
    """None when this request's reads came from the primary (or no read scope); else a WAL position
    the replica had replayed before they ran: their state is at least that new."""
    scope = _scope.get()
    if scope is None or scope.alias in (None, DEFAULT_DB_ALIAS):
        return None
    return scope.served_lsn


# --- the replicas' health, per process -----------------------------------------------------------
@dataclass
class Replica:
    alias: str
    checked_at: float = float("-inf")
    healthy: bool = False
    lsn: int = 0
    lag: float = 0.0
    reason: str = "unchecked"


_replicas: dict[str, Replica] = {}
_turn = itertools.count()


def replicas() -> list[Replica]:
    aliases = settings.DATABASE_REPLICAS
    if list(_replicas) != aliases:
        _replicas.clear()
        _replicas.update({alias: Replica(alias) for alias in aliases})
    return list(_replicas.values())


def reset() -> None:
    """Forget every replica's health (tests; a settings change)."""
    _replicas.clear()


def choose(min_lsn: int = 0) -> tuple[str, int] | None:
    """(alias, its replay position) of a healthy replica at ``min_lsn`` or later; None: the primary."""
    now = time.monotonic()
    usable = []
    for replica in replicas():
        if now - replica.checked_at >= settings.REPLICA_CHECK_SECONDS:
            check(replica, now)
        if replica.healthy:
            usable.append(replica)
    if min_lsn and usable:
        caught_up = [replica for replica in usable if replica.lsn >= min_lsn]
        if not caught_up:  # the last check is older than the token: ask where replay is now
            caught_up = [replica for replica in usable if refresh(replica) >= min_lsn][:1]
        usable = caught_up
    if not usable:
        return None
    replica = usable[next(_turn) % len(usable)]
    return replica.alias, replica.lsn


def check(replica: Replica, now: float | None = None) -> None:
    """One health query on the replica: standby, replay position, lag; updates the metrics."""
    replica.checked_at = time.monotonic() if now is None else now
    try:
        with connections[replica.alias].cursor() as cursor:
            cursor.execute(HEALTH)
            standby, replayed, lag = cursor.fetchone()
    except Exception as exc:  # noqa: BLE001 - down, refusing, timing out: skipped until the next check
        _drop_connection(replica.alias)
        _unhealthy(replica, "down", error=f"{type(exc).__name__}: {exc}".strip())
        return
    replica.lsn, replica.lag = lsn_value(replayed), float(lag or 0)
    metrics.DATABASE_REPLICA_LAG.labels(replica=replica.alias).set(replica.lag)
    if not standby:
        _unhealthy(replica, "not_standby")
    elif replica.lag > settings.REPLICA_MAX_LAG_SECONDS:
        _unhealthy(replica, "lag")
    else:
        if not replica.healthy and replica.reason != "unchecked":
            logger.info("database replica back in use", extra={"replica": replica.alias, "lag_seconds": replica.lag})
        replica.healthy, replica.reason = True, "ok"
        metrics.DATABASE_REPLICA_UP.labels(replica=replica.alias).set(1)


def refresh(replica: Replica) -> int:
    """The replica's replay position now (one query); a failure marks it down."""
    try:
        with connections[replica.alias].cursor() as cursor:
            cursor.execute(REPLAYED)
            replica.lsn = lsn_value(cursor.fetchone()[0])
    except Exception as exc:  # noqa: BLE001
        _drop_connection(replica.alias)
        _unhealthy(replica, "down", error=f"{type(exc).__name__}: {exc}".strip())
        return 0
    return replica.lsn


def failed(alias: str, error: str) -> None:
    """A statement or connection of replica ``alias`` failed (the database backend tells): skip it
    until its next check, and let the request answer again from the primary."""
    replica = _replicas.get(alias)
    if replica is not None and replica.healthy:
        replica.checked_at = time.monotonic()
        _unhealthy(replica, "down", error=error)
    scope = _scope.get()
    if scope is not None and scope.alias == alias:
        scope.failed = True


def _unhealthy(replica: Replica, reason: str, error: str = "") -> None:
    if replica.healthy or replica.reason != reason:
        logger.warning(
            "database replica skipped: %s",
            reason,
            extra={"replica": replica.alias, "reason": reason, "lag_seconds": replica.lag, "error": error},
        )
    replica.healthy, replica.reason = False, reason
    metrics.DATABASE_REPLICA_UP.labels(replica=replica.alias).set(0)
    metrics.DATABASE_REPLICA_SKIPPED.labels(replica=replica.alias, reason=reason).inc()


def _drop_connection(alias: str) -> None:
    try:
        connections[alias].close()
    except Exception:  # noqa: BLE001 - a broken connection may fail to close; it is dropped either way
        pass


def note_write() -> None:
    """The request writes: its later reads use the primary, its token is read after this commit."""
    scope = _scope.get()
    if scope is not None:
        scope.wrote, scope.commit_lsn = True, 0


# --- the primary's WAL position ------------------------------------------------------------------
def primary_lsn() -> int:
    """The primary's WAL insert position now: after a commit, at or past that commit's record."""
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute(PRIMARY_LSN)
        return lsn_value(cursor.fetchone()[0])


def commit_lsn() -> int:
    """:func:`primary_lsn` after this request's last commit, read once (the cache's tokens and the
    response's ``Consistency-Token`` share it); call from ``transaction.on_commit`` or after it."""
    scope = _scope.get()
    if scope is None:
        return primary_lsn()
    if not scope.commit_lsn:
        scope.commit_lsn = primary_lsn()
    return scope.commit_lsn


# --- the router ----------------------------------------------------------------------------------
class ReplicaRouter:
    """``DATABASE_ROUTERS`` when replicas are configured: ORM reads as :func:`read_alias` says,
    writes on the primary (and every later read of the request with them)."""

    def db_for_read(self, model: type[Any], **hints: Any) -> str:
        if model._meta.app_label in settings.REPLICA_PRIMARY_APPS:
            return DEFAULT_DB_ALIAS
        return read_alias()

    def db_for_write(self, model: type[Any], **hints: Any) -> str:
        note_write()
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool:
        return True  # the replicas hold the primary's very rows

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        return db == DEFAULT_DB_ALIAS
