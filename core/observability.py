"""Request observability: the runbook's HTTP metrics, one JSON log line per request, request ids,
and 503 (never 500) while the database is unreachable."""

from __future__ import annotations

import contextvars
import logging
import re
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse

from core import metrics

logger = logging.getLogger("iam.request")
request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
DATABASE_DOWN = (OperationalError, InterfaceError)
QUIET_ROUTES = {"healthz", "readyz", "metrics"}


class RequestIdFilter(logging.Filter):
    """Adds the current request id to every log record (empty outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = request_id_var.get()
        return True


class RoutineTickFilter(logging.Filter):
    """Drops beat's INFO line for every due task (``Sending due task relay-outbox`` each second);
    the relay's own lines and beat's warnings and errors stay."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno == logging.INFO and str(record.msg).startswith("Scheduler: Sending due task"))


def route_of(request: HttpRequest) -> str:
    """The URL pattern that served the request (``api/v1/tenants/{tenant}/``), never the raw path."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        return "<unmatched>"
    return route_template(match.route) if match.route else (match.view_name or "<unnamed>")


def route_template(route: str) -> str:
    """``api/v1/tenants/(?P<tenant>[^/]+)/$`` (a router's regex) → ``api/v1/tenants/{tenant}/``."""
    template = _TEMPLATES.get(route)
    if template is None:  # the URLconf's routes are a fixed set: each is rewritten once per process
        template = _PATH_CONVERTER.sub(r"{\1}", _NAMED_GROUP.sub(r"{\1}", route)).lstrip("^").rstrip("$")
        if len(_TEMPLATES) < 10_000:
            _TEMPLATES[route] = template
    return template


_TEMPLATES: dict[str, str] = {}


_NAMED_GROUP = re.compile(r"\(\?P<(\w+)>(?:[^()]|\([^()]*\))*\)")
_PATH_CONVERTER = re.compile(r"<(?:\w+:)?(\w+)>")


def principal_of(request: HttpRequest) -> str:
    """``key:<name>``, ``basic:<username>`` or ``console:<username>``; never evaluates a lazy user (no query for a log line)."""
    from django.utils.functional import SimpleLazyObject, empty

    user = request.__dict__.get("user")
    if isinstance(user, SimpleLazyObject):
        user = None if user._wrapped is empty else user._wrapped
    key_principal = getattr(user, "principal", None)  # an API key's request.user (access.principals.KeyUser)
    if key_principal is not None:
        key_label: str = key_principal.label
        return key_label
    principal = getattr(user, "_iam_principal", None)  # set by HTTP Basic authentication
    if principal is not None and principal.kind == "basic":
        basic_label: str = principal.label
        return basic_label
    if user is not None and getattr(user, "is_authenticated", False):
        return f"console:{user.get_username()}"
    return ""


def database_unavailable(request: HttpRequest) -> HttpResponse:
    """503 for the API (problem+json, Retry-After) and a plain page for the console and the rest."""
    if request.path.startswith("/api/"):
        from core.api.problems import plain_problem

        response: HttpResponse = plain_problem(503, "Service unavailable", "the database is unreachable; retry shortly")
    else:
        response = HttpResponse(
            "<!doctype html><title>Service unavailable</title><h1>Service unavailable</h1>"
            "<p>The database is unreachable. This page recovers by itself; retry shortly.</p>",
            status=503,
            content_type="text/html",
        )
    response["Retry-After"] = "5"
    return response


class ObservabilityMiddleware:
    """Request id, HTTP metrics by route template, the request's log line (the lean door in front of it
    does the same for the requests it answers, with :func:`observed`)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = request_id_of(request)
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        return observed(request, response, request_id, started)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, DATABASE_DOWN):
            return database_unavailable(request)
        return None


def request_id_of(request: HttpRequest) -> str:
    return request_id_from(request.META)


def request_id_from(meta: dict[str, Any]) -> str:
    """The client's ``X-Request-ID`` (at most 64 characters), or a new one."""
    return meta.get("HTTP_X_REQUEST_ID", "")[:64] or uuid.uuid4().hex


def observed(request: HttpRequest, response: HttpResponse, request_id: str, started: float) -> HttpResponse:
    """Count the request, stamp its id on the response and write its log line (every door's end)."""
    match = getattr(request, "resolver_match", None)
    response["X-Request-ID"] = request_id
    record(
        request.method or "",
        route_of(request),
        response.status_code,
        time.perf_counter() - started,
        request_id=request_id,
        quiet=match is not None and match.url_name in QUIET_ROUTES,
        tenant=match.kwargs.get("tenant", "") if match else "",
        principal=lambda: principal_of(request),
    )
    return response


_SERIES: dict[tuple[str, str, int], tuple[Any, Any]] = {}  # (method, route, status) → the two metrics' series


def record(
    method: str,
    route: str,
    status: int,
    duration: float,
    *,
    request_id: str,
    quiet: bool,
    tenant: str,
    principal: Callable[[], str],
) -> None:
    """The request's metrics and log line (``principal`` is called only for a line that is written)."""
    series = _SERIES.get((method, route, status))
    if series is None:  # prometheus_client's labels() costs a lock and a tuple check per call
        if len(_SERIES) >= 1_000:
            _SERIES.clear()
        series = _SERIES[(method, route, status)] = (
            metrics.HTTP_REQUESTS.labels(method, route, str(status)),
            metrics.HTTP_REQUEST_DURATION.labels(method, route),
        )
    series[0].inc()
    series[1].observe(duration)
    level = logging.DEBUG if quiet else logging.INFO
    if status >= 500:
        level = logging.ERROR
    if logger.isEnabledFor(level):  # the line's fields are built only for a line that is written
        logger.log(
            level,
            "%s %s %s",
            method,
            route,
            status,
            extra={
                "request_id": request_id,
                "method": method,
                "route": route,
                "status": status,
                "duration_ms": round(duration * 1000, 2),
                "tenant": tenant,
                "principal": principal(),
            },
        )


class ProbesMiddleware:
    """Serve ``/healthz``, ``/readyz`` and ``/metrics`` before the Host header is checked.

    Kubelets and Prometheus address pods by IP, which ``ALLOWED_HOSTS`` rightly does not list.
    """

    PATHS = ("/healthz", "/readyz", "/metrics")

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info in self.PATHS and request.method in ("GET", "HEAD"):
            from django.urls import resolve

            match = resolve(request.path_info)
            request.resolver_match = match
            response: HttpResponse = match.func(request)
            return response
        return self.get_response(request)


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: a database outage anywhere in the stack is a 503, anything else a 500."""
    error = sys.exc_info()[1]
    if isinstance(error, DATABASE_DOWN) or isinstance(getattr(error, "__cause__", None), DATABASE_DOWN):
        return database_unavailable(request)
    if request.path.startswith("/api/"):
        body = {"type": "about:blank", "title": "Internal server error", "status": 500, "detail": "see the logs"}
        return JsonResponse(body, status=500, content_type="application/problem+json")
    return HttpResponse("<h1>Server error</h1>", status=500)
