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

from typing import Any

from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient


class PooledRedisCacheClient(RedisCacheClient):
    """Django's client, but one ``redis.Redis`` per connection pool instead of one per operation."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, Any] = {}

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        index = self._get_connection_pool_index(write)
        client = self._clients.get(index)
        if client is None:
            client = self._clients[index] = self._client(connection_pool=self._get_connection_pool(write))
        return client


class RedisCache(DjangoRedisCache):
    """``CACHES["default"]["BACKEND"]`` when ``REDIS_URL`` is set."""

    def __init__(self, server: str, params: dict) -> None:
        super().__init__(server, params)
        self._class = PooledRedisCacheClient


def round_trip(get: list[str], incr: tuple[str, int] | None = None) -> tuple[list[Any], int | None]:
    """The values of ``get`` (None where absent) and, if ``incr=(key, ttl)``, that counter after +1.

    One network round trip with Redis. The counter's key expires ``ttl`` seconds after its last hit
    (a fixed-window counter names its window in the key, so the key outlives its window by at most
    ``ttl``). Raises what the cache raises (callers fail open or fall back to the database).
    """
    backend = caches["default"]
    if isinstance(backend, DjangoRedisCache):
        commands = []
        if get:
            commands.append([b"MGET", *(backend.make_key(key).encode() for key in get)])
        if incr is not None:
            counter = backend.make_key(incr[0]).encode()
            commands += [[b"INCR", counter], [b"EXPIRE", counter, b"%d" % incr[1]]]
        replies = _send(backend._cache.get_client(write=True).connection_pool, commands)
        loads = backend._cache._serializer.loads
        values = [None if raw is None else loads(raw) for raw in replies[0]] if get else []
        return values, (int(replies[-2]) if incr is not None else None)
    found = backend.get_many(get) if get else {}
    count = None
    if incr is not None:
        backend.add(incr[0], 0, incr[1])
        try:
            count = backend.incr(incr[0])
        except ValueError:  # expired between add and incr
            backend.add(incr[0], 1, incr[1])
            count = 1
    return [found.get(key) for key in get], count


def _send(pool: Any, commands: list[list[bytes]]) -> list[Any]:
    """Write every command at once on one pooled connection, then read every reply: one round trip.

    What ``pipeline(transaction=False).execute()`` does, without building a pipeline object, its
    retry wrapper and redis-py's generic argument encoding for each request.
    """
    packed = b"".join(
        b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(arg), arg) for arg in args) for args in commands
    )
    connection = pool.get_connection()
    try:
        connection.send_packed_command([packed])
        return [connection.read_response() for _ in commands]
    except BaseException:
        connection.disconnect()  # a half-read reply must not be read by the next request
        raise
    finally:
        pool.release(connection)
