"""``POST /Bulk`` (RFC 7644 §3.7): operations on Users and Groups in order, each in a savepoint of its
own, through the same stores as the single endpoints.

``bulkId:<id>`` in a later operation's path or data is replaced by the id the operation with that
``bulkId`` created; a reference to an operation that failed or has not run is that operation's
error (409 ``invalidValue``). ``failOnErrors``: processing stops after that many errors. More
operations than ``SCIM_BULK_MAX_OPERATIONS`` is a 413, as is a body over the size limit.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction
from rest_framework.request import Request
from rest_framework.response import Response

from scim.base import ScimView, etag
from scim.errors import ScimError, as_scim_error, error_body, invalid_value
from scim.group_store import GroupStore
from scim.schemas import BULK_REQUEST, BULK_RESPONSE
from scim.user_store import UserStore

METHODS = ("POST", "PUT", "PATCH", "DELETE")
PREFIX = "bulkId:"


def _resolve(value: Any, created: dict[str, str]) -> Any:
    """``value`` with every ``bulkId:<id>`` string replaced by the created resource's id."""
    if isinstance(value, str) and value.startswith(PREFIX):
        found = created.get(value[len(PREFIX) :])
        if found is None:
            raise ScimError(409, f"{value} names no operation that has created a resource", "invalidValue")
        return found
    if isinstance(value, list):
        return [_resolve(item, created) for item in value]
    if isinstance(value, dict):
        return {key: _resolve(item, created) for key, item in value.items()}
    return value


def _version(text: Any) -> int | None:
    if text is None:
        return None
    digits = str(text).removeprefix("W/").strip('"')
    if not digits.isdigit():
        raise ScimError(412, f"version {text!r} is not an ETag of this resource")
    return int(digits)


class BulkView(ScimView):
    def post(self, request: Request, tenant: str) -> Response:
        body = request.data
        if not isinstance(body, dict) or not isinstance(body.get("Operations"), list):
            raise ScimError(400, "a BulkRequest has an Operations list", "invalidSyntax")
        if body.get("schemas") is not None and BULK_REQUEST not in body["schemas"]:
            raise ScimError(400, f"a BulkRequest names the schema {BULK_REQUEST}", "invalidSyntax")
        limit = settings.SCIM_BULK_MAX_OPERATIONS
        if len(body["Operations"]) > limit:
            raise ScimError(413, f"at most {limit} operations in one bulk request", "tooMany")
        fail_on = body.get("failOnErrors")
        if fail_on is not None and (isinstance(fail_on, bool) or not isinstance(fail_on, int) or fail_on < 1):
            raise invalid_value("failOnErrors is a positive integer")
        stores = {"Users": UserStore(self.tenant, self.base_url), "Groups": GroupStore(self.tenant, self.base_url)}
        created: dict[str, str] = {}
        results, errors = [], 0
        for operation in body["Operations"]:
            result = self._one(operation, stores, created)
            results.append(result)
            if not str(result["status"]).startswith("2"):
                errors += 1
                if fail_on is not None and errors >= fail_on:
                    break
        return self.answer({"schemas": [BULK_RESPONSE], "Operations": results})

    def _one(self, operation: Any, stores: dict[str, Any], created: dict[str, str]) -> dict[str, Any]:
        method = str(operation.get("method", "")).upper() if isinstance(operation, dict) else ""
        bulk_id = operation.get("bulkId") if isinstance(operation, dict) else None
        result: dict[str, Any] = {"method": method}
        if bulk_id is not None:
            result["bulkId"] = bulk_id
        try:
            if method not in METHODS:
                raise ScimError(400, "method is one of POST, PUT, PATCH, DELETE", "invalidSyntax")
            if method == "POST" and not isinstance(bulk_id, str):
                raise ScimError(400, "a POST in a bulk request has a bulkId", "invalidSyntax")
            path = operation.get("path")
            kind, _, ident = str(path).strip("/").partition("/")
            ident = _resolve(ident, created)
            if kind not in stores or (method == "POST") == bool(ident) or "/" in ident:
                raise ScimError(400, f"{path!r} is not /Users, /Groups or one of theirs for {method}", "invalidPath")
            data = _resolve(operation.get("data"), created)
            version = _version(operation.get("version"))
            store = stores[kind]
            with transaction.atomic():
                if method == "POST":
                    obj = store.create(data)
                    created[str(bulk_id)] = str(obj.id)
                elif method == "PUT":
                    obj = store.replace(ident, data, version=version)
                elif method == "PATCH":
                    obj = store.patch(ident, data, version=version)
                else:
                    store.delete(ident, version=version)
                    obj = None
        except Exception as exc:
            error = as_scim_error(exc)
            if error is None:
                raise
            result.update(status=str(error.status), response=error_body(error.status, error.detail, error.scim_type))
            return result
        if obj is None:
            result["status"] = "204"
            return result
        result.update(
            location=f"{self.base_url}/{kind}/{obj.id}",
            version=etag(obj.version),
            status="201" if method == "POST" else "200",
        )
        return result
