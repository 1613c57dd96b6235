"""The near cache: values a web worker may answer from with no round trip, and the writes that reach it first.

With Redis, every request of the express lane (``api.express``) used to read the revocation
generation, the throttle counter and the PIP entry in one round trip: correct from the next request
on, but never cheaper than that round trip. A worker's near cache holds those values in the process
and **every write that changes one of them returns only once every worker has dropped it**:

* a writer (``publish``, called where the shared tokens are replaced: ``resolver.cache``'s
  invalidations and ``access.keys``' revocation generation) numbers its change (``INCR near:seq``),
  publishes the keys it changed on ``near:invalidate`` and waits until every worker that holds a
  lease has acknowledged that number;
* each worker's listener thread, subscribed to the channel, drops what depends on those keys and
  acknowledges (``HSET near:acks``);
* a worker answers from its near cache only while it holds a **lease**: a ``PING`` sent on its
  subscription comes back (so every message published before it has been read and applied), then
  the lease is renewed in Redis (``near:leases``, Redis's clock) for :data:`LEASE_SECONDS` from a
  moment after the ``PING`` was sent, while the worker counts its own lease from before it sent it,
  shortened by :data:`MARGIN_SECONDS`. A worker whose subscription breaks cannot renew, stops
  answering from memory before Redis drops its lease, and is then no longer waited for: a writer
  waits at most :data:`LEASE_SECONDS` for a worker that has gone quiet.

A new or reconnected subscription starts empty (what was published while it was away is lost), and
a value read from Redis is remembered only if nothing was invalidated since before it was read
(:meth:`Near.mark`): a value read before a change and stored after its invalidation is never kept.
Writers and processes without a listener (Celery, commands) only publish. Without Redis there is
nothing to hold: the near cache exists only where the shared cache does.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache as DjangoRedisCache

from core.metrics import NEAR_CACHE_LEASES, NEAR_CACHE_PUBLISH

logger = logging.getLogger(__name__)

CHANNEL = b"near:invalidate"
SEQUENCE = "near:seq"
LEASES = "near:leases"  # sorted set: worker id → end of its lease (Redis time, ms)
ACKS = "near:acks"  # hash: worker id → the last change number it applied
LEASE_SECONDS = 2.0
MARGIN_SECONDS = 0.25  # the worker's own count of its lease ends this much before Redis's
RENEW_SECONDS = 0.5
LOG_EVERY_SECONDS = 60.0  # while Redis stays unreachable, the warning is repeated this often
ALL = "*"  # an invalidation of every value (what a subscription that restarts does to itself)

_PUBLISH = """
local seq = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', ARGV[1], seq .. ' ' .. ARGV[2])
return seq
"""
# The leases that have not ended, minus those that acknowledged ARGV[1]; ended leases are removed.
_PENDING = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do redis.call('HDEL', KEYS[2], id) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local pending = 0
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if tonumber(redis.call('HGET', KEYS[2], id) or '0') < tonumber(ARGV[1]) then pending = pending + 1 end
end
return pending
"""
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return now
"""


class Near:
    """One worker's held values, their dependencies, its throttle budgets and its lease."""

    def __init__(self, size: int = 50_000, keep: float = 300.0) -> None:
        self.size = size  # values held; a PIP entry of 10 attributes is ~2.6 KB in memory (both formats' bodies)
        self.keep = keep  # seconds: a value no change dropped is read again after this long (PIP_CACHE_SECONDS)
        self.values: dict[Any, tuple[Any, float, tuple[str, ...]]] = {}
        # name → {key: None}: dicts, not sets, so that the garbage collector can stop tracking them
        # (a set is always tracked; with ~100,000 values, every full collection would walk them all)
        self.dependents: dict[str, dict[Any, None]] = {}
        self.budgets: dict[str, int] = {}
        self.version = 0  # bumped by every invalidation applied
        self.valid_until = 0.0  # monotonic; 0: no lease
        self.lock = threading.Lock()

    def serving(self) -> bool:
        return time.monotonic() < self.valid_until

    def mark(self) -> int:
        """Take before reading what :meth:`remember` will store."""
        return self.version

    def recall(self, key: Any) -> Any:
        found = self.values.get(key)
        if found is None or found[1] < time.monotonic():
            return None
        return found[0]

    def remember(self, key: Any, value: Any, depends: Iterable[str], mark: int) -> None:
        """Hold ``value`` until one of ``depends`` is invalidated, if none was since ``mark``.

        ``key`` and ``value`` should be immutable (tuples of strings, bytes, numbers): the garbage
        collector then stops tracking them, and a full collection does not walk the cache."""
        with self.lock:
            if mark != self.version or not self.serving():
                return
            while len(self.values) >= self.size:  # the oldest first
                self._forget(next(iter(self.values)))
            names = tuple(depends)
            self.values[key] = (value, time.monotonic() + self.keep, names)
            for name in names:
                self.dependents.setdefault(name, {})[key] = None

    def invalidate(self, names: Iterable[str]) -> None:
        with self.lock:
            self.version += 1
            for name in names:
                if name == ALL:
                    self._drop_all()
                    return
                for key in self.dependents.pop(name, ()):
                    if key in self.values:
                        self._forget(key)

    def _forget(self, key: Any) -> None:
        _, _, names = self.values.pop(key)
        for name in names:
            keys = self.dependents.get(name)
            if keys is not None:
                keys.pop(key, None)
                if not keys:
                    del self.dependents[name]

    def _drop_all(self) -> None:
        self.values.clear()
        self.dependents.clear()
        self.budgets.clear()

    # A throttle's budget: requests a worker took from the shared counter in one INCRBY, spent here.
    def take(self, counter: str) -> bool:
        left = self.budgets.get(counter, 0)
        if left <= 0:
            return False
        self.budgets[counter] = left - 1
        return True

    def give_back(self, counter: str) -> None:
        self.budgets[counter] = self.budgets.get(counter, 0) + 1

    def grant(self, counter: str, requests: int) -> None:
        if len(self.budgets) >= 1024:  # one per key and window: the past windows' are useless
            self.budgets.clear()
        self.budgets[counter] = self.budgets.get(counter, 0) + requests


def current() -> Near | None:
    """This worker's near cache if it may answer now (``PIP_NEAR_CACHE``, Redis, a lease held), else None."""
    if not settings.PIP_NEAR_CACHE or not settings.SHARED_CACHE:
        return None
    return serving(caches["default"])


class Listener(threading.Thread):
    """The worker's subscription: applies invalidations, acknowledges them, holds the lease."""

    def __init__(self, backend: DjangoRedisCache, near: Near) -> None:
        super().__init__(name="near-cache", daemon=True)
        self.backend = backend
        self.near = near
        self.id = f"{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self.pid = os.getpid()
        self.applied = 0
        self.subscribed = False  # in the current session
        self.pause_count = 0  # sessions ended (tests wait on it)
        self.stopping = threading.Event()
        self._socket: Any = None

    def run(self) -> None:
        pause = 0.05
        logged = -LOG_EVERY_SECONDS
        while not self.stopping.is_set():
            self.subscribed = False
            try:
                self._session()
            except Exception as exc:  # noqa: BLE001 - any failure: nothing held, then subscribe again
                if self.subscribed:
                    pause = 0.05  # a subscription that worked: reconnect at once
                # Once per outage, then once a minute while it lasts (a reconnection every 2 s).
                if not self.stopping.is_set() and (self.subscribed or time.monotonic() - logged >= LOG_EVERY_SECONDS):
                    logger.warning("near cache subscription lost", extra={"error": str(exc)})
                    logged = time.monotonic()
            finally:
                self._lost()
            self.pause_count += 1
            self.stopping.wait(pause)
            pause = min(pause * 2, 2.0)

    def stop(self) -> None:
        self.stopping.set()
        self._lost()
        sock = self._socket
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass
        self.join(timeout=5)
        try:
            client = self.backend._cache.get_client(write=True)
            client.zrem(self.backend.make_key(LEASES), self.id)
            client.hdel(self.backend.make_key(ACKS), self.id)
        except Exception:  # noqa: BLE001 - the lease ends by itself
            pass

    def _lost(self) -> None:
        self.near.valid_until = 0.0
        self.near.invalidate([ALL])
        NEAR_CACHE_LEASES.set(0)

    def _session(self) -> None:
        import hiredis

        pool = self.backend._cache._get_connection_pool(True)  # type: ignore[attr-defined]  # Django's private helper
        kwargs = {**pool.connection_kwargs, "protocol": 2, "socket_timeout": None}
        connection = pool.connection_class(**kwargs)
        connection.connect()
        self._socket = sock = connection._sock
        client = self.backend._cache.get_client(write=True)
        renew = client.register_script(_RENEW)
        leases, acks = self.backend.make_key(LEASES), self.backend.make_key(ACKS)
        reader = hiredis.Reader()
        try:
            sock.sendall(_command(b"SUBSCRIBE", self.backend.make_key(CHANNEL.decode()).encode()))
            ping_sent = 0.0
            waiting = False
            subscribed = False
            while not self.stopping.is_set():
                now = time.monotonic()
                if subscribed and not waiting and now - ping_sent >= RENEW_SECONDS:
                    ping_sent, waiting = now, True
                    sock.sendall(_command(b"PING"))
                if waiting and now - ping_sent > LEASE_SECONDS:
                    raise TimeoutError("no PONG within the lease")
                readable, _, _ = select.select([sock], [], [], RENEW_SECONDS / 2)
                if not readable:
                    continue
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("Redis closed the subscription")
                reader.feed(data)
                applied_before = self.applied
                while (reply := reader.gets()) is not False:
                    kind = reply[0]
                    if kind == b"message":
                        self._apply(reply[2])
                    elif kind == b"pong":
                        waiting = False
                        renew(keys=[leases, acks], args=[self.id, int(LEASE_SECONDS * 1000), self.applied])
                        if not self.near.serving():
                            NEAR_CACHE_LEASES.set(1)
                        self.near.valid_until = ping_sent + LEASE_SECONDS - MARGIN_SECONDS
                    elif kind == b"subscribe":
                        # Everything published before this moment is lost to us: start empty from the
                        # current number (a change numbered after it reaches this subscription).
                        self._lost()
                        self.applied = int(client.get(self.backend.make_key(SEQUENCE)) or 0)
                        subscribed = self.subscribed = True
                        ping_sent = 0.0
                if self.applied != applied_before:
                    client.hset(acks, self.id, self.applied)
        finally:
            self._socket = None
            connection.disconnect()

    def _apply(self, data: bytes) -> None:
        number, _, names = data.partition(b" ")
        self.near.invalidate(orjson.loads(names))
        self.applied = max(self.applied, int(number))


def _command(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(arg), arg) for arg in args)


# This process's near cache and its listener (started by the first request that may use it).
NEAR = Near()
_LISTENER: Listener | None = None
_START = threading.Lock()


def serving(backend: Any) -> Near | None:
    """This process's near cache if it may answer now, else None (and its listener started)."""
    listener = _LISTENER
    if listener is not None and listener.pid == os.getpid() and listener.backend is backend:
        return NEAR if NEAR.serving() else None
    _start(backend)
    return None


def _start(backend: Any) -> None:
    global _LISTENER
    if not isinstance(backend, DjangoRedisCache):
        return
    with _START:
        if _LISTENER is not None and _LISTENER.pid == os.getpid() and _LISTENER.backend is backend:
            return
        if _LISTENER is not None and _LISTENER.pid == os.getpid():
            _LISTENER.stop()  # the cache's configuration changed (a test's settings)
        NEAR.valid_until = 0.0
        NEAR.invalidate([ALL])
        NEAR.size = max(1, settings.PIP_NEAR_CACHE_ENTRIES)
        NEAR.keep = float(settings.PIP_CACHE_SECONDS)
        listener = Listener(backend, NEAR)
        listener.start()
        _LISTENER = listener


def stop() -> None:
    """Stop this process's listener (tests; a process ends without)."""
    global _LISTENER
    with _START:
        if _LISTENER is not None and _LISTENER.pid == os.getpid():
            _LISTENER.stop()
        _LISTENER = None


def publish(backend: Any, names: list[str]) -> None:
    """Tell every worker that ``names`` changed, and return once each one holding a lease has
    dropped what depended on them (or its lease has ended: at most :data:`LEASE_SECONDS`).

    Called after the change is visible to a reader of Redis (the new tokens set): a worker that
    reads after it acknowledges reads the new state. Raises what Redis raises.
    """
    if not isinstance(backend, DjangoRedisCache) or not names:
        return
    publish_with(backend._cache.get_client(write=True), backend.make_key, names)


def publish_with(client: Any, make_key: Callable[[str], str], names: list[str]) -> None:
    """:func:`publish` with a redis-py client and the cache's key function (``bench/pip.py`` times it)."""
    started = time.monotonic()
    number = client.eval(_PUBLISH, 1, make_key(SEQUENCE), make_key(CHANNEL.decode()), orjson.dumps(names))
    pause = 0.0002
    pending = make_key(LEASES), make_key(ACKS)
    try:
        while client.eval(_PENDING, 2, *pending, number):
            if time.monotonic() > started + LEASE_SECONDS + MARGIN_SECONDS:  # pragma: no cover - Redis's clock jumped
                logger.error("near cache: a worker did not acknowledge a change", extra={"change": int(number)})
                return
            time.sleep(pause)
            pause = min(pause * 2, 0.01)
    finally:
        NEAR_CACHE_PUBLISH.observe(time.monotonic() - started)
