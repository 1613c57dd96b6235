"""A SCIM client for the tests: a Bearer key with ``scim:provision`` on one tenant, bodies sent as
``application/scim+json``."""

from __future__ import annotations

import json
from typing import Any

from rest_framework.test import APIClient

from access.keys import api_key_create

SCIM_JSON = "application/scim+json"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
TENANT_EXT = "urn:citadel:iam:scim:schemas:extension:tenant:2.0:User"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"


class Scim:
    """``scim.get("/Users")`` against ``/scim/v2/tenants/<tenant>``; answers with ``.body`` parsed."""

    def __init__(self, tenant: Any, scopes: tuple[str, ...] = ("scim:provision",), name: str = "idp") -> None:
        self.key, raw = api_key_create(name=name, scopes=list(scopes), tenants=[tenant])
        self.base = f"/scim/v2/tenants/{tenant.slug}"
        self.client = APIClient()
        self.client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")

    def call(self, method: str, path: str, body: Any = None, **headers: Any) -> Any:
        url = path if path.startswith("/scim/") else self.base + path
        kwargs: dict[str, Any] = dict(headers)
        if body is not None:
            kwargs.update(data=json.dumps(body), content_type=SCIM_JSON)
        response = getattr(self.client, method)(url, **kwargs)
        response.body = json.loads(response.content) if response.content else None
        return response

    def get(self, path: str, params: dict[str, Any] | None = None, **headers: Any) -> Any:
        response = self.client.get(self.base + path, params or {}, **headers)
        response.body = json.loads(response.content) if response.content else None
        return response

    def post(self, path: str, body: Any, **headers: Any) -> Any:
        return self.call("post", path, body, **headers)

    def put(self, path: str, body: Any, **headers: Any) -> Any:
        return self.call("put", path, body, **headers)

    def patch(self, path: str, operations: list[dict[str, Any]], **headers: Any) -> Any:
        return self.call("patch", path, {"schemas": [PATCH_OP], "Operations": operations}, **headers)

    def delete(self, path: str, **headers: Any) -> Any:
        return self.call("delete", path, **headers)


def user_body(user_name: str, **extra: Any) -> dict[str, Any]:
    return {"schemas": [USER], "userName": user_name, **extra}
