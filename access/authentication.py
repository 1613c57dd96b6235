"""DRF authentication: ``Authorization: Bearer <api key>``, and HTTP Basic for console users.

``ApiKeyAuthentication`` is listed first, so the API's 401 challenges with
``WWW-Authenticate: Bearer realm="iam-service"`` (DRF takes the challenge from the first class).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from django.contrib.auth import authenticate
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from access.keys import KEY_PREFIX, principal_for_key
from access.login_guard import LockedOut, record_failure
from access.models import ApiKey
from access.principals import KeyUser, console_principal


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[KeyUser, ApiKey] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            self._failed(request, "", "malformed")
            raise exceptions.AuthenticationFailed("malformed Bearer credentials")
        try:
            raw = header[1].decode()
        except UnicodeDecodeError:
            self._failed(request, "", "malformed")
            raise exceptions.AuthenticationFailed("malformed Bearer credentials") from None
        found = principal_for_key(raw)
        if found is None:
            self._failed(request, raw, "unknown, expired or revoked key")
            raise exceptions.AuthenticationFailed("unknown, expired or revoked API key")
        key, principal = found
        return KeyUser(key, principal), key

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="iam-service"'

    @staticmethod
    def _failed(request: Request, raw: str, reason: str) -> None:
        # Only a well-formed key's public prefix ("iam_<8 hex>") is logged, never the secret part.
        parts = raw.split("_")
        label = f"key:{parts[0]}_{parts[1]}" if len(parts) >= 3 and parts[0] == KEY_PREFIX else "key:?"
        record_failure(request._request, door="api_key", username=label[:24], reason=reason)


class BasicAuthentication(authentication.BasicAuthentication):
    """HTTP Basic through ``authenticate(request=<the Django request>)``: django-axes counts the failures
    and refuses a locked-out (username, address) pair before hashing (429 with ``Retry-After``)."""

    def authenticate_credentials(self, userid: str, password: str, request: Request | None = None) -> tuple[Any, None]:
        http_request = getattr(request, "_request", request)
        user = authenticate(request=http_request, username=userid, password=password)
        if getattr(http_request, "axes_locked_out", False):
            raise LockedOut()
        if user is None or not user.is_active:
            raise exceptions.AuthenticationFailed("invalid username or password")
        principal = console_principal(user)
        if principal is not None:
            # The console user's rights, but the audit log and the logs name the door: "basic", not "console".
            user._iam_principal = replace(principal, kind="basic")  # type: ignore[attr-defined]  # our mark on Django's User (read by principal_of)
        return (user, None)

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="iam-service"'  # never a Basic challenge: browsers would pop a dialog
