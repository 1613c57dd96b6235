"""Brute-force protection of password logins, with django-axes, and the record of every failed login.

Both password doors — the console's login form and HTTP Basic on the API — go through
``django.contrib.auth.authenticate(request=…)``, where ``axes.backends.AxesStandaloneBackend`` comes
first: once a (username, client address) pair has failed ``LOGIN_FAILURE_LIMIT`` times, it is refused
before any password is hashed, for ``LOGIN_LOCKOUT_MINUTES`` after its last attempt. Keying on the pair
means an attacker cannot lock a username out for everyone, nor an address out for every username.

Every failure (wrong password, unknown user, locked out, wrong API key) is one JSON log line
(``authentication failed``: door, username, client address — never the secret) and one increment of
``auth_failures_total{door}``.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from rest_framework import exceptions

from core import metrics

logger = logging.getLogger("iam.auth")


def client_address(request: HttpRequest) -> str:
    """The caller's address: ``REMOTE_ADDR``, or with ``TRUSTED_PROXY_COUNT`` = n proxies in front of the
    service, the address the outermost of them saw (the n-th from the right of ``X-Forwarded-For``;
    entries further left are the client's to forge)."""
    remote = request.META.get("REMOTE_ADDR", "") or ""
    proxies = getattr(settings, "TRUSTED_PROXY_COUNT", 0)
    if proxies <= 0:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if len(forwarded) < proxies:
        return remote
    return forwarded[-proxies][:64]


def door_of(request: HttpRequest | None) -> str:
    path = getattr(request, "path", "") or ""
    return "api_basic" if path.startswith("/api/") else "console"


def retry_after_seconds() -> int:
    return int(settings.AXES_COOLOFF_TIME.total_seconds())


def record_failure(request: HttpRequest | None, *, door: str, username: str, reason: str) -> None:
    """One log line and one count per failed authentication."""
    metrics.AUTH_FAILURES.labels(door).inc()
    logger.warning(
        "authentication failed",
        extra={
            "door": door,
            "username": username[:150],
            "client_address": client_address(request) if request is not None else "",
            "reason": reason,
        },
    )


def on_user_login_failed(sender: Any, credentials: dict, request: HttpRequest | None = None, **kwargs: Any) -> None:
    """``user_login_failed`` receiver: the console and HTTP Basic doors (Django has already cleansed the
    password out of ``credentials``)."""
    locked = bool(getattr(request, "axes_locked_out", False))
    record_failure(
        request,
        door=door_of(request),
        username=str(credentials.get("username") or ""),
        reason="locked out" if locked else "bad credentials",
    )


class LockedOut(exceptions.Throttled):
    """429 with ``Retry-After`` for a locked-out (username, address) pair on the API."""

    default_detail = "too many failed logins for this username from this address; retry later"

    def __init__(self) -> None:
        super().__init__(wait=retry_after_seconds(), detail=self.default_detail)


def lockout_response(request: HttpRequest, original_response: HttpResponse | None, credentials: dict | None) -> Any:
    """``AXES_LOCKOUT_CALLABLE``: problem+json under ``/api/``, a page for the console; both 429."""
    retry_after = str(retry_after_seconds())
    if request.path.startswith("/api/"):
        if original_response is not None and original_response.status_code == 429:
            return original_response  # the API's authenticator already answered (access.authentication)
        from core.api.problems import plain_problem

        response: HttpResponse = plain_problem(429, "Too many requests", LockedOut.default_detail)
    else:
        minutes = max(1, round(int(retry_after) / 60))
        response = HttpResponse(
            render_to_string("access/locked_out.html", {"minutes": minutes}, request=request), status=429
        )
    response["Retry-After"] = retry_after
    return response
