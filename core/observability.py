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
    return request.META.get("HTTP_X_REQUEST_ID", "")[:64] or uuid.uuid4().hex


def observed(request: HttpRequest, response: HttpResponse, request_id: str, started: float) -> HttpResponse:
    """Count the request, stamp its id on the response and write its log line (every door's end)."""
    duration = time.perf_counter() - started
    route = route_of(request)
    metrics.HTTP_REQUESTS.labels(request.method, route, str(response.status_code)).inc()
    metrics.HTTP_REQUEST_DURATION.labels(request.method, route).observe(duration)
    response["X-Request-ID"] = request_id
    match = getattr(request, "resolver_match", None)
    level = logging.DEBUG if match is not None and match.url_name in QUIET_ROUTES else logging.INFO
    if response.status_code >= 500:
        level = logging.ERROR
    if logger.isEnabledFor(level):  # the line's fields are built only for a line that is written
        logger.log(
            level,
            "%s %s %s",
            request.method,
            route,
            response.status_code,
            extra={
                "request_id": request_id,
                "method": request.method,
                "route": route,
                "status": response.status_code,
                "duration_ms": round(duration * 1000, 2),
                "tenant": (match.kwargs.get("tenant", "") if match else ""),
                "principal": principal_of(request),
            },
        )
    return response


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
