"""The Policy Information Point API: single and batch subject lookups, and OPA bundles."""

from __future__ import annotations

from typing import Any

import orjson
from django.conf import settings
from django.http import HttpResponse, HttpResponseNotModified
from django.http.response import HttpResponseBase
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.views import APIView

from access import scopes as S
from access.permissions import ScopedView
from access.pii_audit import pii_read_count
from access.principals import Principal
from access.release import FULL, Release
from core.db import replicas, tokens
from core.errors import FieldError, NotFound, ValidationFailed
from resolver import cache as pip_cache
from resolver.selectors import Resolved, as_uuid, subject_resolve, subjects_resolve
from users.validation import EXTERNAL_ID_MAX

FORMAT_PARAM = OpenApiParameter(
    "format", str, OpenApiParameter.QUERY, enum=["native", "authzen"], description="authzen: an AuthZEN subject."
)
TENANT_PARAM = OpenApiParameter("tenant", str, OpenApiParameter.PATH, description="Tenant id or slug.")
EXTERNAL_ID_PARAM = OpenApiParameter(
    "external_id", str, OpenApiParameter.PATH, description="The subject's external id, percent-encoded ('/' allowed)."
)
EXPLAIN_PARAM = OpenApiParameter(
    "explain", bool, OpenApiParameter.QUERY, description="true: each attribute's sources (user, group:<key>, default)."
)
VARY = "Authorization, Consistency-Token"  # a token may change the answer (a fresher database)
SUBJECT_SCHEMA = {"type": "object", "additionalProperties": True}


def etag_matches(header: str | None, etag: str) -> bool:
    """``If-None-Match`` (weak comparison, lists and ``*`` included) against our ETag."""
    if not header:
        return False
    candidates = [candidate.strip().removeprefix("W/") for candidate in header.split(",")]
    return "*" in candidates or etag in candidates


def wants_authzen(value: str) -> bool:
    """``?format=``: native (the default) or authzen; anything else is a 400."""
    if value not in ("native", "authzen"):
        raise ValidationFailed([FieldError("/format", "enum", "one of native, authzen")])
    return value == "authzen"


def wants_explain(value: str) -> bool:
    """``?explain=``: false (the default) or true; anything else is a 400."""
    if value not in ("true", "false"):
        raise ValidationFailed([FieldError("/explain", "enum", "one of true, false")])
    return value == "true"


class SubjectLookupView(ScopedView, APIView):
    """``GET /api/v1/pip/tenants/{tenant}/subjects/{external_id}``: a subject and its tenant."""

    scopes = {"get": S.PIP_READ}
    throttle_scope = "pip"

    @extend_schema(
        parameters=[TENANT_PARAM, EXTERNAL_ID_PARAM, FORMAT_PARAM, EXPLAIN_PARAM],
        responses={200: OpenApiResponse(OpenApiTypes.OBJECT), 304: None},
        operation_id="pip_subject_lookup",
    )
    def get(self, request: Request, tenant: str, external_id: str) -> HttpResponse:
        return subject_lookup(
            principal=self.principal,
            tenant=tenant,
            external_id=external_id,
            authzen=wants_authzen(request.query_params.get("format", "native")),
            if_none_match=request.headers.get("If-None-Match"),
            explain=wants_explain(request.query_params.get("explain", "false")),
        )


def subject_lookup(
    *,
    principal: Principal,
    tenant: str,
    external_id: str,
    authzen: bool,
    if_none_match: str | None,
    prefetched: list[Any] | None = None,
    explain: bool = False,
) -> HttpResponse:
    """The single lookup's answer (200 or 304), for the DRF view and the lean door alike.

    ``prefetched``: the values of ``pip_cache.lookup_keys`` for the tenant id this process memoised,
    read in the request's one round trip (``api.resolver.lean``).
    """
    tenant_id = as_uuid(tenant)
    if tenant_id is not None and not principal.reaches(tenant_id):
        raise NotFound("no such subject")
    release = principal.release
    if explain:  # a diagnosis: always from the database, never cached
        resolved = subject_resolve(tenant_ref=tenant, external_id=external_id, explain=True, release=release)
    else:
        resolved = _resolve(tenant, tenant_id, external_id, prefetched, release)
    if resolved is None or not principal.reaches(as_uuid(resolved.tenant_id)):
        raise NotFound("no such subject")
    status, headers, body = subject_answer(resolved, principal, authzen, if_none_match)
    if status == 304:
        return HttpResponseNotModified(headers=headers)
    return HttpResponse(body, content_type="application/json", headers=headers)


def subject_answer(
    resolved: Resolved, principal: Principal, authzen: bool, if_none_match: str | None
) -> tuple[int, dict[str, str], bytes]:
    """(200 or 304, the lookup's own headers, the body) for a subject the principal may read; counts
    a release of PII to a key."""
    headers = {
        "ETag": resolved.etag,
        "Cache-Control": settings.PIP_CACHE_CONTROL,
        "Vary": VARY,
        tokens.HEADER: tokens.issue(resolved.lsn),
    }
    if etag_matches(if_none_match, resolved.etag):
        return 304, headers, b""
    if resolved.pii and principal.kind == "key":
        pii_read_count(key_id=principal.id)
    return 200, headers, resolved.authzen if authzen else resolved.native


def prefetch_keys(tenant: str, external_id: str, release: Release = FULL) -> list[str]:
    """The cache keys a lookup reads (its release policy's entry), when this process knows the
    tenant's id without I/O."""
    if not pip_cache.enabled():
        return []
    tenant_id = as_uuid(tenant)
    key_tenant = str(tenant_id) if tenant_id is not None else pip_cache.memoised_tenant_id(tenant)
    return [] if key_tenant is None else pip_cache.lookup_keys(key_tenant, external_id, release.fingerprint)


def _resolve(
    tenant: str, tenant_id: Any, external_id: str, prefetched: list[Any] | None, release: Release
) -> Resolved | None:
    if not pip_cache.enabled():
        return subject_resolve(tenant_ref=tenant, external_id=external_id, release=release)
    key_tenant = str(tenant_id) if tenant_id is not None else pip_cache.tenant_id_for_slug(tenant)
    generations = None
    if key_tenant is not None:
        if prefetched and tenant_id is None and pip_cache.memoised_tenant_id(tenant) != key_tenant:
            prefetched = None  # read under another tenant id than the one now memoised
        scope = replicas.current_scope()
        cached, generations = pip_cache.lookup(
            key_tenant,
            external_id,
            slug=None if tenant_id is not None else tenant,
            prefetched=prefetched or None,
            fingerprint=release.fingerprint,
            min_lsn=scope.min_lsn if scope is not None else 0,
        )
        if cached is not None:
            return cached
    resolved = subject_resolve(tenant_ref=tenant, external_id=external_id, release=release)
    if resolved is not None:
        if tenant_id is None and resolved.tenant_id != key_tenant:
            # The slug was unknown, or mapped to another (since deleted) tenant: learn it, cache nothing
            # under a tenant id whose tokens the subject's writes would not touch.
            pip_cache.remember_slug(resolved.tenant_slug, resolved.tenant_id)
        elif generations is not None and key_tenant is not None:  # generations come only with a key_tenant
            pip_cache.store(
                key_tenant, external_id, generations, resolved, release.fingerprint, floor=replicas.replica_floor()
            )
    return resolved


TENANT_REF_MAX = 100  # a tenant id or slug


class BatchItem(serializers.Serializer):
    tenant = serializers.CharField(max_length=TENANT_REF_MAX)
    external_id = serializers.CharField(max_length=EXTERNAL_ID_MAX, trim_whitespace=False)


# The body's schema for OpenAPI only: batch_items() is its one check (the lean door has no DRF), same limits.
class BatchRequest(serializers.Serializer):
    subjects = serializers.ListField(child=BatchItem(), min_length=1, max_length=settings.PIP_BATCH_MAX)


class SubjectBatchView(ScopedView, APIView):
    """``POST /api/v1/pip/resolve``: up to ``PIP_BATCH_MAX`` subjects in one request, one query."""

    scopes = {"post": S.PIP_READ}
    throttle_scope = "pip"

    @extend_schema(
        parameters=[FORMAT_PARAM, EXPLAIN_PARAM],
        request=BatchRequest,
        responses={
            200: inline_serializer(
                "PipBatchResponse",
                {"results": serializers.ListField(child=serializers.DictField())},
            )
        },
        operation_id="pip_resolve_batch",
    )
    def post(self, request: Request) -> HttpResponse:
        return subjects_lookup(
            principal=self.principal,
            data=request.data,
            authzen=wants_authzen(request.query_params.get("format", "native")),
            explain=wants_explain(request.query_params.get("explain", "false")),
        )


def subjects_lookup(*, principal: Principal, data: Any, authzen: bool, explain: bool = False) -> HttpResponse:
    """The batch's answer, for the DRF view and the lean door alike: one query, bodies spliced as bytes."""
    items = batch_items(data)
    resolved = subjects_resolve(items=items, explain=explain, release=principal.release)
    parts, pii, lsn = [], 0, 0
    for index, (tenant, external_id) in enumerate(items):
        found = resolved.get(index)
        lsn = max(lsn, found.lsn if found is not None else 0)
        if found is not None and principal.reaches(as_uuid(found.tenant_id)):
            pii += found.pii
            body = found.authzen if authzen else found.native
            parts.append(b'{"index":%d,"found":true,"etag":%s,"subject":%s}' % (index, orjson.dumps(found.etag), body))
        else:
            parts.append(
                b'{"index":%d,"found":false,"tenant":%s,"external_id":%s,"error":"not_found"}'
                % (index, orjson.dumps(tenant), orjson.dumps(external_id))
            )
    if pii and principal.kind == "key":
        pii_read_count(key_id=principal.id, subjects=pii)
    return HttpResponse(
        b'{"results":[' + b",".join(parts) + b"]}",
        content_type="application/json",
        # Nothing found: 0, a token that asks for nothing (the batch is a read, its token is no write's).
        headers={tokens.HEADER: tokens.issue(lsn)},
    )


def batch_items(data: Any) -> list[tuple[str, str]]:
    if not isinstance(data, dict) or set(data) != {"subjects"}:
        raise ValidationFailed([FieldError("/subjects", "required", 'the body is {"subjects": [...]}')])
    subjects = data["subjects"]
    if not isinstance(subjects, list) or not subjects:
        raise ValidationFailed([FieldError("/subjects", "type", "a non-empty list")])
    limit = settings.PIP_BATCH_MAX
    if len(subjects) > limit:
        raise ValidationFailed([FieldError("/subjects", "max_items", f"at most {limit} subjects per request")])
    errors, items = [], []
    for index, item in enumerate(subjects):
        if not isinstance(item, dict) or set(item) != {"tenant", "external_id"}:
            errors.append(FieldError(f"/subjects/{index}", "shape", 'each item is {"tenant": …, "external_id": …}'))
            continue
        tenant, external_id = item["tenant"], item["external_id"]
        if not isinstance(tenant, str) or not 1 <= len(tenant) <= TENANT_REF_MAX:
            errors.append(FieldError(f"/subjects/{index}/tenant", "type", "a tenant id or slug"))
        if not isinstance(external_id, str) or not 1 <= len(external_id) <= EXTERNAL_ID_MAX:
            errors.append(FieldError(f"/subjects/{index}/external_id", "type", f"1-{EXTERNAL_ID_MAX} characters"))
        items.append((tenant, external_id))
    if errors:
        raise ValidationFailed(errors)
    return items


class BundleView(ScopedView, APIView):
    """``GET /api/v1/pip/tenants/{tenant}/bundle.tar.gz``: an OPA bundle of the tenant's subjects."""

    scopes = {"get": S.PIP_READ}
    throttle_scope = "pip"

    @extend_schema(
        parameters=[TENANT_PARAM],
        responses={(200, "application/gzip"): OpenApiTypes.BINARY, 304: None},
        operation_id="pip_opa_bundle",
    )
    def get(self, request: Request, tenant: str) -> HttpResponseBase:
        from django.http import FileResponse

        from resolver.bundle import bundle_build, bundle_revision
        from tenants.selectors import tenant_get

        found = tenant_get(ref=tenant, queryset=self.principal.tenants())
        release = self.principal.release
        revision = bundle_revision(str(found.id), release)
        etag = f'"{revision}"'
        headers = {"ETag": etag, "Cache-Control": settings.PIP_CACHE_CONTROL, "Vary": VARY}
        if etag_matches(request.headers.get("If-None-Match"), etag):
            return HttpResponseNotModified(headers=headers)
        bundle = bundle_build(str(found.id), revision, release)
        if bundle.pii and self.principal.kind == "key":
            pii_read_count(key_id=self.principal.id, subjects=bundle.pii)
        response = FileResponse(bundle.file, content_type="application/gzip", headers=headers)
        response["Content-Length"] = str(bundle.size)
        return response
