"""The consistency contract at the door: what freshness a request asks for, and the token a write returns.

* A request may send ``Consistency-Token: <token>`` (or ``?consistency=<token>``): its reads see a
  state at least as new as the token's; a token this deployment did not issue is a 400 problem
  naming where it came from. ``Consistency: full`` reads from the primary.
* A successful write (``POST``, ``PUT``, ``PATCH``, ``DELETE``) answers ``Consistency-Token``: the
  primary's WAL position after its commit. A browser of the console gets it as a cookie too, so that
  the page after a save shows the save.

The lean door (``api/lean.py``) calls :func:`scope_for` and :func:`stamp` itself for the PIP.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from core.api.problems import plain_problem
from core.db import replicas, tokens
from core.db.replicas import ReadScope

logger = logging.getLogger("iam.replicas")
READ_METHODS = frozenset({"GET", "HEAD"})
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def scope_for(request: HttpRequest, *, reads_only: bool | None = None) -> ReadScope:
    """The request's :class:`ReadScope`; :class:`tokens.BadToken` for a token or ``Consistency`` value
    that is not ours. ``reads_only``: whether the request may read from a replica (default: by method)."""
    raw = request.META.get(tokens.META_HEADER)
    source = tokens.HEADER
    if raw is None and "consistency=" in request.META.get("QUERY_STRING", ""):
        raw, source = request.GET.get(tokens.QUERY_PARAMETER), f"?{tokens.QUERY_PARAMETER}="
    min_lsn = tokens.read(raw, source) if raw else 0
    if not min_lsn and "HTTP_COOKIE" in request.META and tokens.COOKIE in request.COOKIES:
        try:
            min_lsn = tokens.read(request.COOKIES[tokens.COOKIE], tokens.COOKIE)
        except tokens.BadToken:
            pass  # a browser cannot mend its cookie: ignored, overwritten by its next write
    force = request.META.get(tokens.FORCE_HEADER)
    if force is not None and force.strip().lower() != "full":
        raise tokens.BadToken("Consistency")
    if reads_only is None:
        reads_only = request.method in READ_METHODS
    return ReadScope(min_lsn=min_lsn, full=force is not None, replicas=reads_only and replicas.configured())


def refused(error: tokens.BadToken) -> HttpResponse:
    detail = (
        "Consistency accepts only 'full'"
        if error.source == "Consistency"
        else f"{error.source}: not a consistency token this service issued (send the one a response gave you)"
    )
    response = plain_problem(400, "Bad request", detail)
    response.headers["Vary"] = "Consistency-Token"
    return response


def stamp(request: HttpRequest, response: HttpResponse, scope: ReadScope) -> None:
    """A successful write's ``Consistency-Token`` (and the console's cookie), read after its commit."""
    if tokens.HEADER in response or replicas.in_transaction():  # ATOMIC_REQUESTS: no commit yet
        return
    try:
        lsn = scope.commit_lsn or replicas.primary_lsn()
    except Exception as exc:  # noqa: BLE001 - the write has committed: answer it, without a token
        logger.warning("consistency token unavailable", extra={"error": str(exc)})
        return
    token = tokens.issue(lsn)
    response[tokens.HEADER] = token
    if settings.SESSION_COOKIE_NAME in request.COOKIES:
        response.set_cookie(
            tokens.COOKIE,
            token,
            max_age=max(60, int(settings.REPLICA_MAX_LAG_SECONDS) * 2),
            httponly=True,
            samesite="Lax",
            secure=settings.SESSION_COOKIE_SECURE,
        )


class ConsistencyMiddleware:
    """Runs each request in its :class:`ReadScope` (reads on a replica for ``GET``/``HEAD``), answers a
    bad token with a 400 problem, and stamps successful writes with their token."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            scope = scope_for(request)
        except tokens.BadToken as error:
            return refused(error)
        reset = replicas.enter(scope)
        try:
            response = replicas.answered(scope, lambda: self.get_response(request))
        finally:
            replicas.leave(reset)
        if request.method in WRITE_METHODS and response.status_code < 400:
            stamp(request, response, scope)
        return response
