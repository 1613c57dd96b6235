"""DRF authentication with ``Authorization: Bearer <api key>``."""

from __future__ import annotations

from rest_framework import authentication, exceptions
from rest_framework.request import Request

from access.keys import principal_for_key
from access.principals import KeyUser


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request):  # type: ignore[no-untyped-def]
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("malformed Bearer credentials")
        try:
            raw = header[1].decode()
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("malformed Bearer credentials") from None
        found = principal_for_key(raw)
        if found is None:
            raise exceptions.AuthenticationFailed("unknown, expired or revoked API key")
        key, principal = found
        return KeyUser(key, principal), key

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="iam-service"'
