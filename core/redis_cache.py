"""The shared cache, as the request path uses it: one Redis client per process, one round trip per request.

Django's ``RedisCacheClient.get_client`` builds a new ``redis.Redis`` (a ~200-entry callback table)
for every cache operation; :class:`RedisCache` keeps one per connection pool, for the life of the
process. :func:`round_trip` reads several keys and counts a throttle hit in **one** network round
trip (a pipeline: ``MGET`` + ``INCR`` + ``EXPIRE``, no ``MULTI``), with the keys and values of
Django's cache API, so what ``cache.set`` wrote ``round_trip`` reads and the other way round.

Without Redis (``LocMemCache``: development, tests, no ``REDIS_URL``) the same calls go through the
cache API; nothing leaves the process.
"""

from __future__ import annotations

import os
import pickle
from typing import Any

from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient

try:
    import hiredis

    HIREDIS = True
except ImportError:  # pragma: no cover - in requirements.in; redis-py's parser then
    HIREDIS = False


class PooledRedisCacheClient(RedisCacheClient):
    """Django's client, but one ``redis.Redis`` per connection pool instead of one per operation."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, Any] = {}

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        index = self._get_connection_pool_index(write)  # type: ignore[attr-defined]  # Django's private helper, not in django-stubs
        client = self._clients.get(index)
        if client is None:
            pool = self._get_connection_pool(write)  # type: ignore[attr-defined]  # Django's private helper, not in django-stubs
            client = self._clients[index] = self._client(connection_pool=pool)  # type: ignore[attr-defined]  # Django's private redis.Redis class, not in django-stubs
        return client


class RedisCache(DjangoRedisCache):
    """``CACHES["default"]["BACKEND"]`` when ``REDIS_URL`` is set."""

    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = PooledRedisCacheClient


def round_trip(
    get: list[str], incr: tuple[str, int] | None = None, backend: Any = None, by: int = 1
) -> tuple[list[Any], int | None]:
    """The values of ``get`` (None where absent) and, if ``incr=(key, ttl)``, that counter after +``by``.

    One network round trip with Redis. The counter's key expires ``ttl`` seconds after its last hit
    (a fixed-window counter names its window in the key, so the key outlives its window by at most
    ``ttl``). Raises what the cache raises (callers fail open or fall back to the database).
    """
    if backend is None:
        backend = caches["default"]
    if isinstance(backend, DjangoRedisCache):
        commands = []
        if get:
            commands.append([b"MGET", *(backend.make_key(key).encode() for key in get)])
        if incr is not None:
            counter = backend.make_key(incr[0]).encode()
            step = [b"INCR", counter] if by == 1 else [b"INCRBY", counter, b"%d" % by]
            commands += [step, [b"EXPIRE", counter, b"%d" % incr[1]]]
        replies = _wire(backend).call(_pack(commands), len(commands))
        values = [None if raw is None else _loads(raw) for raw in replies[0]] if get else []
        return values, (int(replies[-2]) if incr is not None else None)
    found = backend.get_many(get) if get else {}
    count = None
    if incr is not None:
        backend.add(incr[0], 0, incr[1])
        try:
            count = backend.incr(incr[0], by)
        except ValueError:  # expired between add and incr
            backend.add(incr[0], by, incr[1])
            count = by
    return [found.get(key) for key in get], count


def _pack(commands: list[list[bytes]]) -> bytes:
    return b"".join(
        b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(arg), arg) for arg in args) for args in commands
    )


def _loads(raw: bytes) -> Any:
    """Django's ``RedisSerializer.loads``: integers are stored as digits, everything else pickled."""
    return pickle.loads(raw) if raw[:1] == b"\x80" else int(raw)


class Wire:
    """This process's own connection for the request's round trip: written at once, read with hiredis.

    redis-py spends ~85 µs of Python per pipelined round trip here (connection checkout with a
    ``poll``, per-argument encoding, its reply parser, release); a raw write and a hiredis reader
    cost ~15 µs. The connection is made by redis-py from the cache's own settings (URL, password,
    database, timeouts), kept out of the pool, and dropped on any error (the next call reconnects);
    a forked child never uses its parent's socket.
    """

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.connection: Any = None
        self.pid = 0

    def call(self, packed: bytes, count: int) -> list[Any]:
        if not HIREDIS:  # pragma: no cover - hiredis is a runtime dependency
            return self._call_redis_py(packed, count)
        if self.connection is None or self.pid != os.getpid():
            self.connection = self.pool.connection_class(**{**self.pool.connection_kwargs, "protocol": 2})
            self.connection.connect()
            self.pid = os.getpid()
        sock = self.connection._sock
        reader = hiredis.Reader()
        replies: list[Any] = []
        try:
            sock.sendall(packed)
            while len(replies) < count:
                reply = reader.gets()
                if reply is False:
                    data = sock.recv(65536)
                    if not data:
                        raise ConnectionError("Redis closed the connection")
                    reader.feed(data)
                elif isinstance(reply, hiredis.ReplyError):
                    raise reply
                else:
                    replies.append(reply)
        except BaseException:
            self.connection.disconnect()  # a half-read reply must not be read by the next request
            self.connection = None
            raise
        return replies

    def _call_redis_py(self, packed: bytes, count: int) -> list[Any]:
        connection = self.pool.get_connection()
        try:
            connection.send_packed_command([packed])
            return [connection.read_response() for _ in range(count)]
        except BaseException:
            connection.disconnect()
            raise
        finally:
            self.pool.release(connection)


_WIRES: dict[int, Wire] = {}


def _wire(backend: DjangoRedisCache) -> Wire:
    client = backend._cache.get_client(write=True)
    wire = _WIRES.get(id(client))
    if wire is None or wire.pool is not client.connection_pool:
        wire = _WIRES[id(client)] = Wire(client.connection_pool)
    return wire
