"""OpenAPI description of the API's two authentication schemes (drf-spectacular extensions)."""

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class _HttpScheme(OpenApiAuthenticationExtension):
    scheme = ""
    description = ""

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": self.scheme, "description": self.description}


class ApiKeyScheme(_HttpScheme):
    target_class = "access.authentication.ApiKeyAuthentication"
    name = "apiKey"
    scheme = "bearer"
    description = "A service-account API key: `Authorization: Bearer iam_…`"


class BasicScheme(_HttpScheme):
    target_class = "access.authentication.BasicAuthentication"
    name = "basicAuth"
    scheme = "basic"
    description = "A console user (staff); locked out per username and address after repeated failures (429)."
