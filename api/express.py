"""The express lane: the door's common case answered from the WSGI environ, with no request object.

The lean door (``api.lean``) still builds a ``WSGIRequest``, an ``HttpResponse`` whose every header
passes Django's checks, a ``ResolverMatch`` and the security middleware's two passes: ~100 µs of CPU
per lookup on top of its one round trip, about as much as a whole minimal DRF view. For a
route with an ``express`` answer, :class:`ExpressLane` does the door's work from the environ for
the one case that dominates a PIP's traffic — a key this process holds, no query string, cookie or
consistency token, a Host the site accepts — and leaves every other request to the door, unchanged:

* with a shared cache, an answer the round trip's values decide (a fresh cache entry);
* without one (and without read replicas), an answer the route reads from the database
  (``express_read``), the held key's generation carried in the same statement
  (:func:`access.keys.generation_check`); a subject that is not found is left to the door;
* before the round trip (anything unusual): the door answers as if the lane did not exist;
* after it (a miss, a 429, a subject the key does not reach): the round trip's values travel to the
  door in the environ (``api.lean.ROUND_TRIP``), so the request is read and counted once;
* a revocation seen in the round trip or the read (the generation moved): the held keys are dropped
  and the door reads the key again, as it would.

What the lane answers carries what the door's answer carries, header for header (the security
middleware's headers are computed once per Host and scheme by that middleware itself), and the same
metrics and log line (``core.observability.record``). ``tests/test_express_lane.py`` compares the two.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.exceptions import DisallowedHost
from django.core.handlers.wsgi import WSGIRequest
from django.core.signals import setting_changed
from django.db import connection
from django.http import HttpResponse

from access import keys
from access.throttling import PrincipalRateThrottle, counted_round_trip, verdict
from api.lean import ROUND_TRIP, Answer, LeanApiMiddleware, LeanRoute, tidy
from core import near_cache
from core.db import tokens
from core.observability import record, request_id_from, request_id_var, route_template

Answered = tuple[str, list[tuple[str, str]], bytes]  # status line, headers, body

REASONS = {200: "OK", 304: "Not Modified"}
# What decides the Host check, the scheme and so the security headers (Django's get_host and is_secure).
SITE_META = ("HTTP_HOST", "HTTP_X_FORWARDED_HOST", "HTTP_X_FORWARDED_PORT", "SERVER_NAME", "SERVER_PORT")
_SITES: dict[tuple[Any, ...], list[tuple[str, str]] | None] = {}
SITES_SIZE = 1_000


class ExpressLane:
    def __init__(self, door: LeanApiMiddleware, route: LeanRoute) -> None:
        assert route.express is not None, "a route without an express answer"
        self.door = door
        self.route = route
        self.answer: Callable[..., Any] = route.express

    def __call__(self, environ: dict[str, Any]) -> Answered | None:
        """The answer, or None: the door answers (with this lane's round trip when it made one)."""
        started = time.perf_counter()
        if (
            environ.get("QUERY_STRING")
            or environ.get("CONTENT_LENGTH") not in (None, "", "0")
            or "HTTP_TRANSFER_ENCODING" in environ
            or tokens.COOKIE in environ.get("HTTP_COOKIE", "")  # the console's consistency cookie
            or tokens.META_HEADER in environ
            or tokens.FORCE_HEADER in environ
        ):
            return None
        path: str = environ.get("PATH_INFO", "")
        if not path.isascii() or "\x00" in path:  # as the server sent it: Django's decoding is then a no-op
            return None
        found = self.route.compiled.match(path)
        authorization: str = environ.get("HTTP_AUTHORIZATION", "")
        if found is None or not authorization.startswith("Bearer "):
            return None
        raw = authorization[7:]
        if not raw or " " in raw:
            return None
        security = site_headers(self.door, environ)
        held = keys.held(raw)
        if security is None or held is None:
            return None
        key, principal, generation = held
        if not keys.recorded_recently(key) or not principal.has(self.route.scope):
            return None  # the door records the use (a write, now and then) or answers the 403
        kwargs = found.groupdict()
        throttle = PrincipalRateThrottle.counter(self.route.throttle_scope, principal)
        if settings.SHARED_CACHE:
            answer = self._cached(environ, principal, kwargs, generation, throttle)
        else:
            answer = self._read(environ, principal, kwargs, generation, throttle)
        if answer is None:
            return None
        status, own, body = answer
        request_id = request_id_from(environ)
        headers = list(own.items())
        if status == 200:
            headers.append(("Content-Type", "application/json"))
        route = self.route.resolved()
        headers += [
            ("Allow", self.route.allow),
            ("X-Frame-Options", settings.X_FRAME_OPTIONS),
            ("Content-Length", str(len(body))),
            *security,
            ("X-Request-ID", request_id),
        ]
        token = request_id_var.set(request_id)
        try:
            record(
                environ["REQUEST_METHOD"],
                route_template(route.route),
                status,
                time.perf_counter() - started,
                request_id=request_id,
                quiet=False,
                tenant=kwargs.get("tenant", ""),
                principal=lambda: principal.label,
            )
        finally:
            request_id_var.reset(token)
        return f"{status} {REASONS[status]}", headers, body

    def _cached(
        self,
        environ: dict[str, Any],
        principal: Any,
        kwargs: dict[str, str],
        generation: str,
        throttle: tuple[str, int, int, float],
    ) -> Answer | None:
        """With a shared cache: the answer from the near cache, else from one round trip."""
        prefetch = self.route.prefetch(principal, kwargs)
        if not prefetch or not isinstance(caches["default"], DjangoRedisCache):
            return None
        near = near_cache.current()
        if near is not None and near.recall(keys.GENERATION_KEY) == generation:  # no round trip at all
            remembered = near.recall(tuple(prefetch))
            if remembered is not None and near.take(throttle[0]):
                answer = self.answer(environ, principal, kwargs, remembered)
                if answer is not None:
                    return answer
                near.give_back(throttle[0])
        return self._round_trip(environ, principal, kwargs, prefetch, generation, throttle, near)

    def _round_trip(
        self,
        environ: dict[str, Any],
        principal: Any,
        kwargs: dict[str, str],
        prefetch: list[str],
        generation: str,
        counter: tuple[str, int, int, float],
        near: near_cache.Near | None,
    ) -> Any:
        """The answer from one round trip (and, with a near cache, what it read remembered), or None:
        the door answers, with this round trip's values."""
        name, limit, seconds, remaining = counter
        get = [keys.GENERATION_KEY, *prefetch]
        mark = near.mark() if near is not None else 0
        try:
            values, position = counted_round_trip(near, get, name, limit, seconds)
        except Exception:  # noqa: BLE001 - the door meets the outage again and answers it
            return None
        if values[0] != generation:
            keys.drop_held()  # a key was revoked (or the cache lost the generation): the door reads it again
            return None
        answer = self.answer(environ, principal, kwargs, values[1:]) if verdict(position, limit, remaining)[0] else None
        if answer is None:
            environ[ROUND_TRIP] = (get, name, values, position)
            return None
        if near is not None:
            near.remember(keys.GENERATION_KEY, values[0], [keys.GENERATION_KEY], mark)
            near.remember(tuple(prefetch), tuple(values[1:]), prefetch, mark)
        return answer

    def _read(
        self,
        environ: dict[str, Any],
        principal: Any,
        kwargs: dict[str, str],
        generation: str,
        counter: tuple[str, int, int, float],
    ) -> Answer | None:
        """Without a shared cache: the answer the route reads from the primary, the held key's
        generation read in the same statement; None: the door answers (counted once)."""
        read = self.route.express_read
        if read is None or settings.DATABASE_REPLICAS:
            return None  # with replicas, the door chooses the connection (and reads the check from the primary)
        name, limit, seconds, remaining = counter
        try:
            values, position = counted_round_trip(None, [], name, limit, seconds)
        except Exception:  # noqa: BLE001 - the door meets the outage again and answers it
            return None
        environ[ROUND_TRIP] = ([], name, values, position)  # whatever follows, the door counts nothing again
        if not verdict(position, limit, remaining)[0]:
            return None
        tidy(connection)  # what the door's request would do first (LeanWSGI): an old or broken connection closed
        connection.health_check_done = True  # type: ignore[attr-defined]  # as the door: a broken connection fails the read, and the door retries
        check = keys.generation_check()
        try:
            with check:
                answer = read(environ, principal, kwargs)
        except Exception:  # noqa: BLE001 - a database error: the door meets it again and answers it (its retry, a 503)
            return None
        if answer is None:
            return None
        if keys.db_generation(check.read()) != generation:
            keys.drop_held()  # a key was revoked or changed since this process read it
            return None
        del environ[ROUND_TRIP]
        return answer()


def site_headers(door: LeanApiMiddleware, environ: dict[str, Any]) -> list[tuple[str, str]] | None:
    """The security middleware's headers for this Host and scheme, or None where the door would not
    answer (a Host outside ``ALLOWED_HOSTS``, or an HTTPS redirect): worked out by Django's own
    request and middleware once per distinct Host and scheme, then remembered."""
    proxy = settings.SECURE_PROXY_SSL_HEADER
    site = (*(environ.get(name) for name in SITE_META), environ.get("wsgi.url_scheme"), proxy and environ.get(proxy[0]))
    if site in _SITES:
        return _SITES[site]
    probe = {name: environ[name] for name in SITE_META if name in environ}
    if proxy and proxy[0] in environ:
        probe[proxy[0]] = environ[proxy[0]]
    request = WSGIRequest(
        {**probe, "REQUEST_METHOD": "GET", "PATH_INFO": "/", "wsgi.input": io.BytesIO(), "wsgi.url_scheme": site[-2]}
    )
    headers: list[tuple[str, str]] | None = None
    try:
        request.get_host()
        if door.security.process_request(request) is None:
            response = door.security.process_response(request, HttpResponse())
            headers = [(name, value) for name, value in response.items() if name != "Content-Type"]
    except DisallowedHost:
        pass
    if len(_SITES) >= SITES_SIZE:
        _SITES.clear()
    _SITES[site] = headers
    return headers


def _forget_sites(**kwargs: Any) -> None:
    _SITES.clear()


setting_changed.connect(_forget_sites)  # a test's override_settings of ALLOWED_HOSTS or SECURE_*
