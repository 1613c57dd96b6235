"""The lean door: the machine-facing hot paths (the PIP lookups) without the framework they don't need.

A PIP lookup is a GET with a Bearer key that answers JSON. Through the full stack it pays for a
session, CSRF, messages, the console's authentication, DRF's request wrapping, content negotiation
and renderers, and one Redis round trip per concern (key, throttle, entry). Here, for the routes in
``LEAN_ROUTES`` only, :class:`LeanApiMiddleware` (the outermost middleware, doing what the
observability, security and body-size middleware do with their own code) answers the **common case**
itself:

* a route and method it serves, ``Authorization: Bearer <key>`` with a key this process holds (or
  reads once from PostgreSQL), holding the route's scope;
* then **one** round trip to the shared cache: the revocation generation (is the held key still
  valid?), the throttle counter (``INCR`` + ``EXPIRE``) and whatever the route prefetches (the PIP
  entry and its tokens) — :func:`core.redis_cache.round_trip`;
* then the route's handler, the same function the DRF view calls.

Everything else — no or a bad key, a missing scope, a method the route lacks, a body that is not
JSON, a key revoked since this process read it — falls through to the full stack unchanged, so every
refusal keeps its status, headers and problem body by construction (``tests/test_api_statuses.py``).
What the door answers itself (200, 304, the handler's 400/404, 429, a 503 while the database is
down) carries the headers the full stack adds (``Allow``, ``X-Frame-Options``, ``Content-Length``,
``SecurityMiddleware``'s, ``X-Request-ID``), and the request's metrics and log line have the same
route template, principal and tenant. django-prometheus's ``django_http_*`` families (not used
by the runbook or the dashboards) do not count these requests.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.db import connection
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.middleware.security import SecurityMiddleware
from django.urls import ResolverMatch, resolve
from django.utils.module_loading import import_string

from access import keys
from access.principals import KeyUser, Principal
from access.throttling import PrincipalRateThrottle, counted_round_trip, verdict
from core import near_cache
from core.api.problems import PROBLEM_JSON, problem_body
from core.db import consistency, replicas
from core.db.replicas import ReadScope
from core.db.tokens import BadToken
from core.errors import DomainError
from core.middleware import refusal
from core.observability import DATABASE_DOWN, database_unavailable, observed, request_id_of, request_id_var

logger = logging.getLogger(__name__)

FALL_THROUGH = None  # a handler's answer meaning "let the full stack answer this request"
TRIED = "iam.lean_door_tried"  # set in the WSGI environ by api.lean_wsgi: the door does not try twice
# Set in the WSGI environ by the express lane (api.express) when it leaves a request it has counted to
# the door: (keys read, throttle counter, values, count), so that the door neither reads nor counts twice.
ROUND_TRIP = "iam.lean_round_trip"


Answer = tuple[int, dict[str, str], bytes]  # status, the handler's own headers, body


@dataclass
class LeanRoute:
    """``pattern`` (on ``path_info``) → ``handler(request, principal, kwargs, prefetched)``, where
    ``prefetched`` are the values of the cache keys ``prefetch(principal, kwargs)`` names.

    ``sample`` is a path the URLconf resolves to the same view: the route template, URL name and
    view of the metrics and log line are taken from Django's own resolver, once.
    """

    pattern: str
    methods: frozenset[str]
    scope: str
    sample: str
    handler: Callable[[HttpRequest, Principal, dict[str, str], list[Any]], HttpResponse | None]
    prefetch: Callable[[Principal, dict[str, str]], list[str]] = lambda principal, kwargs: []
    accepts: Callable[[HttpRequest], bool] = lambda request: True  # False: the full stack answers
    throttle_scope: str = "pip"
    # The express lane's answer from the round trip's values (``api.express``), or None: the door answers.
    express: Callable[[dict[str, Any], Principal, dict[str, str], list[Any]], Answer | None] | None = None
    # Without a shared cache, the express lane's read: what the answer needs, read from the database (the
    # lane carries the held key's check), then the answer once the key is known still valid; None: the
    # door answers.
    express_read: Callable[[dict[str, Any], Principal, dict[str, str]], Callable[[], Answer] | None] | None = None
    compiled: re.Pattern = field(init=False)
    match: ResolverMatch | None = field(init=False, default=None)
    allow: str = field(init=False, default="")

    def __post_init__(self) -> None:
        self.compiled = re.compile(self.pattern)

    def resolved(self) -> ResolverMatch:
        if self.match is None:
            self.match = resolve(self.sample)
            func: Any = self.match.func  # django-stubs type it as a plain Callable
            actions = getattr(func, "actions", None)  # a viewset's route (ViewSetMixin.as_view)
            view = func.cls(**func.initkwargs) if actions is not None else func.view_class()
            for method, action in (actions or {}).items():
                setattr(view, method, getattr(view, action))  # as the viewset's view function does
            if hasattr(view, "get") and not hasattr(view, "head"):
                view.head = view.get  # as View.setup() does
            self.allow = ", ".join(view.allowed_methods)  # what DRF's responses carry
        return self.match


def routes() -> list[LeanRoute]:
    found: list[LeanRoute] = []
    for dotted in settings.LEAN_ROUTES:
        found.extend(import_string(dotted))
    return found


def literal_start(pattern: str) -> str:
    """The literal characters a route's pattern starts with (after ``^``)."""
    found = re.match(r"\^([\w/.-]*)", pattern)
    assert found is not None, f"a lean route's pattern starts with ^: {pattern!r}"
    return found.group(1)


class LeanApiMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response
        self.routes = routes()
        self.security = SecurityMiddleware(get_response)
        # The literal start of each pattern: any other path goes on at the cost of one startswith.
        self.prefixes = tuple({literal_start(route.pattern) for route in self.routes})

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if request.META.get(TRIED) is None:
            response = self.answer(request)
            if response is not None:
                return response
        return self.get_response(request)

    def answer(self, request: HttpRequest) -> HttpResponse | None:
        """The door's answer to a request on one of its routes, or ``None``: the full stack answers."""
        path = request.path_info
        if path.startswith(self.prefixes):
            for route in self.routes:
                found = route.compiled.match(path)
                if found is not None:
                    if request.method in route.methods:
                        return self.door(request, route, found.groupdict())
                    break
        return FALL_THROUGH

    def door(self, request: HttpRequest, route: LeanRoute, kwargs: dict[str, str]) -> HttpResponse | None:
        """What the middleware in front of the session does for these requests, then :meth:`serve`.

        The lean door is the outermost middleware: it does itself, with the same code, what
        ``ObservabilityMiddleware`` (request id, metrics, log line), ``SecurityMiddleware`` (its
        headers; an HTTPS redirect falls through) and ``BodySizeLimitMiddleware`` (a refusal falls
        through) do. ``ProbesMiddleware``, ``ApiProblemMiddleware`` and WhiteNoise have nothing to do
        for these paths; django-prometheus's middleware is the one left out.
        """
        if self.security.process_request(request) is not None or refusal(request) is not None:
            return FALL_THROUGH
        request_id = request_id_of(request)
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        # No health-check round trip (``CONN_HEALTH_CHECKS``' ``SELECT 1``) in front of a lookup: a
        # connection found broken on use is closed and the read, which writes nothing, served again
        # once on a new one.
        reused = connection.connection is not None
        connection.health_check_done = True  # type: ignore[attr-defined]  # set by BaseDatabaseWrapper.__init__; django-stubs omit it
        try:
            try:
                response = self.serve(request, route, kwargs)
            except DATABASE_DOWN:
                if not reused or connection.in_atomic_block:
                    raise
                connection.close()
                response = self.serve(request, route, kwargs)
        except DATABASE_DOWN:
            response = database_unavailable(request)
        except DisallowedHost:
            response = FALL_THROUGH  # the full stack's 400 problem and log line
        except Exception:
            # A bug of the door: said loudly, and the full stack answers (its own 500 if it fails too).
            logger.exception("the lean door failed; the full stack answers")
            response = FALL_THROUGH
        finally:
            request_id_var.reset(token)
        if response is None:
            return FALL_THROUGH
        return observed(request, self.security.process_response(request, response), request_id, started)

    def serve(self, request: HttpRequest, route: LeanRoute, kwargs: dict[str, str]) -> HttpResponse | None:
        authorization = request.META.get("HTTP_AUTHORIZATION", "")
        if not authorization.startswith("Bearer "):
            return FALL_THROUGH
        raw = authorization[7:]
        if not raw or " " in raw:
            return FALL_THROUGH
        try:
            scope = consistency.scope_for(request, reads_only=True)
        except BadToken:
            return FALL_THROUGH  # the full stack's 400 problem, before anything is counted
        request.get_host()  # CommonMiddleware's check: a Host outside ALLOWED_HOSTS raises (the full stack's 400)
        shared = settings.SHARED_CACHE
        held = keys.held(raw)
        if held is None:
            found = keys.principal_for_key(raw)  # the database (and the generation, with a shared cache)
            if found is None:
                return FALL_THROUGH  # 401, logged and counted by the full stack
            key, principal = found
            generation = None
        else:
            key, principal, generation = held
            keys.record_use(key)
        if not principal.has(route.scope) or not route.accepts(request):
            return FALL_THROUGH  # 403, or a request the route leaves to the full stack
        prefetch = route.prefetch(principal, kwargs)
        counter, limit, seconds, remaining = PrincipalRateThrottle.counter(route.throttle_scope, principal)
        # A held key's generation: with the cache's round trip, or else with the handler's first query.
        database_check = keys.generation_check() if generation is not None and not shared else None
        held_in_database = generation
        if database_check is not None:
            generation = None
        get = [keys.GENERATION_KEY, *prefetch] if generation is not None else prefetch
        handed = request.META.pop(ROUND_TRIP, None)  # the express lane's round trip for this request
        # A held key on a route that reads nothing else (the batch): the worker's near cache may
        # hold the generation and a throttle budget (core/near_cache.py), and no round trip is made.
        near = near_cache.current() if generation is not None and not prefetch and handed is None else None
        mark = near.mark() if near is not None else 0
        try:
            if handed is not None and handed[0] == get and handed[1] == counter:
                values, count = handed[2], handed[3]
            elif near is not None and near.recall(keys.GENERATION_KEY) == generation and near.take(counter):
                values, count = [generation], limit  # within the limit: the budget was granted by the counter
            else:
                values, count = counted_round_trip(near, get, counter, limit, seconds)
        except Exception as exc:  # noqa: BLE001 - a cache outage: fail open, nothing prefetched
            if generation is not None:
                return FALL_THROUGH  # the held key cannot be checked: the full stack reads the database
            logger.warning("shared cache unavailable", extra={"error": str(exc)})
            values, count = [None] * len(get), None
        if generation is not None:
            if values[0] != generation:
                keys.drop_held()  # a key was revoked (or the cache lost the generation): read it again
                return FALL_THROUGH
            if near is not None:
                near.remember(keys.GENERATION_KEY, values[0], [keys.GENERATION_KEY], mark)
            values = values[1:]
        allowed, wait = verdict(count, limit, remaining)
        request.user = KeyUser(key, principal)  # type: ignore[assignment]  # the log line's principal; django-stubs allow only Django's users
        request.resolver_match = _match(route, kwargs)
        if not allowed:
            response = problem(429, "Too many requests", throttled_detail(wait))
            response["Retry-After"] = str(int(wait))
        else:
            if database_check is None:
                handled = self.handle(scope, request, route, principal, kwargs, values)
            else:
                # With replicas the lookup reads a replica: the check then reads the primary itself.
                with database_check:
                    handled = self.handle(scope, request, route, principal, kwargs, values)
            if database_check is not None and keys.db_generation(database_check.read()) != held_in_database:
                keys.drop_held()  # a key was revoked or changed since this process read it
                return FALL_THROUGH
            if handled is None:
                return FALL_THROUGH
            response = handled
        response["Allow"] = route.allow
        if "X-Frame-Options" not in response:
            response["X-Frame-Options"] = settings.X_FRAME_OPTIONS
        if "Content-Length" not in response and not response.streaming:
            response["Content-Length"] = str(len(response.content))
        return response

    def handle(
        self,
        scope: ReadScope,
        request: HttpRequest,
        route: LeanRoute,
        principal: Principal,
        kwargs: dict[str, str],
        values: list[Any],
    ) -> HttpResponse | None:
        """The route's handler in the request's read scope (a replica when one is fresh enough; the
        primary again if that replica fails meanwhile)."""
        reset = replicas.enter(scope)
        try:
            return replicas.answered(scope, lambda: self.handled(request, route, principal, kwargs, values))
        finally:
            replicas.leave(reset)

    @staticmethod
    def handled(
        request: HttpRequest, route: LeanRoute, principal: Principal, kwargs: dict[str, str], values: list[Any]
    ) -> HttpResponse | None:
        try:
            return route.handler(request, principal, kwargs, values)
        except DomainError as exc:
            return problem(exc.status, exc.title, exc.detail, getattr(exc, "errors", None))


def tidy(connection: Any) -> None:
    """``close_old_connections`` for an alias a lookup uses (the primary; the replicas when
    ``DATABASE_REPLICA_URLS`` is set); never inside a transaction (a test's)."""
    if connection.connection is not None and not connection.in_atomic_block:
        connection.close_if_unusable_or_obsolete()


def _match(route: LeanRoute, kwargs: dict[str, str]) -> ResolverMatch:
    match = route.resolved()
    return ResolverMatch(match.func, (), kwargs, match.url_name, route=match.route)


def problem(status: int, title: str, detail: str, errors: list | None = None) -> HttpResponse:
    body = problem_body(status, title, detail)
    if errors:
        body["errors"] = [error.as_dict() for error in errors]
    return HttpResponse(orjson.dumps(body), status=status, content_type=PROBLEM_JSON)


def throttled_detail(wait: float) -> str:
    from rest_framework.exceptions import Throttled

    return str(Throttled(wait).detail)
