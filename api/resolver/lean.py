"""The PIP's routes in the lean door (``api.lean``): the single lookup and the batch.

Same paths, scopes and handlers as the DRF views of ``api.resolver.views``; only the framework
around them differs. A batch whose body is not a JSON object this parser accepts falls through to
the full stack (DRF's 415 or 400), before anything is counted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

import orjson
from django.http import HttpRequest, HttpResponse

from access import scopes as S
from access.principals import Principal
from api.lean import FALL_THROUGH, Answer, LeanRoute
from api.resolver.views import (
    prefetch_keys,
    subject_answer,
    subject_lookup,
    subjects_lookup,
    wants_authzen,
    wants_explain,
)
from resolver import cache as pip_cache
from resolver.selectors import Resolved, as_uuid, subject_resolve

SUBJECT = r"^/api/v1/pip/tenants/(?P<tenant>[^/]+)/subjects/(?P<external_id>.+)$"


def lookup(request: HttpRequest, principal: Principal, kwargs: dict[str, str], prefetched: list[Any]) -> HttpResponse:
    return subject_lookup(
        principal=principal,
        tenant=kwargs["tenant"],
        external_id=kwargs["external_id"],
        authzen=wants_authzen(request.GET.get("format", "native")),
        if_none_match=request.META.get("HTTP_IF_NONE_MATCH"),
        prefetched=prefetched or None,
        explain=wants_explain(request.GET.get("explain", "false")),
    )


def lookup_prefetch(principal: Principal, kwargs: dict[str, str]) -> list[str]:
    """The entry of the key's release policy: the policy travels with the principal (no round trip)."""
    return prefetch_keys(kwargs["tenant"], kwargs["external_id"], principal.release)


def lookup_express(
    environ: dict[str, Any], principal: Principal, kwargs: dict[str, str], prefetched: list[Any]
) -> Answer | None:
    """The express lane's answer (``api.express``): a fresh cache entry the key reaches, in the native
    format; None for anything else (the door answers it with these values)."""
    tenant_token, subject_token, entry = prefetched
    resolved = reached(
        principal,
        kwargs["tenant"],
        lambda tenant_id: pip_cache.fresh(
            tenant_token, subject_token, entry, slug=None if tenant_id is not None else kwargs["tenant"]
        ),
    )
    return None if resolved is None else subject_answer(resolved, principal, False, environ.get("HTTP_IF_NONE_MATCH"))


def lookup_read(environ: dict[str, Any], principal: Principal, kwargs: dict[str, str]) -> Callable[[], Answer] | None:
    """The express lane's read without a shared cache (``api.express``): the subject from the database
    (one statement), then its native answer; None for a subject not found or not reached (the door
    answers it)."""
    resolved = reached(
        principal,
        kwargs["tenant"],
        lambda tenant_id: subject_resolve(
            tenant_ref=kwargs["tenant"], external_id=kwargs["external_id"], release=principal.release
        ),
    )
    if resolved is None:
        return None
    return lambda: subject_answer(resolved, principal, False, environ.get("HTTP_IF_NONE_MATCH"))


def reached(principal: Principal, tenant: str, read: Callable[[UUID | None], Resolved | None]) -> Resolved | None:
    """What ``read(tenant id or None for a slug)`` finds, if the key reaches its tenant; None otherwise
    (the tenant's id in the path checked before anything is read, the subject's tenant after)."""
    tenant_id = as_uuid(tenant)
    if tenant_id is not None and not principal.reaches(tenant_id):
        return None
    resolved = read(tenant_id)
    if resolved is None or not principal.reaches(as_uuid(resolved.tenant_id)):
        return None
    return resolved


def batch(request: HttpRequest, principal: Principal, kwargs: dict[str, str], prefetched: list[Any]) -> HttpResponse:
    return subjects_lookup(
        principal=principal,
        data=request._lean_json,  # type: ignore[attr-defined]  # set on Django's request by parse_batch
        authzen=wants_authzen(request.GET.get("format", "native")),
        explain=wants_explain(request.GET.get("explain", "false")),
    )


def parse_batch(request: HttpRequest) -> bool:
    """Parse the body before anything is counted; False: let the full stack answer (415, 400).

    Only a body of the batch's own shape is taken here — an object whose one member ``subjects`` is
    a list of ``{"tenant": …, "external_id": …}`` string pairs without NUL — so nothing deeper than
    three levels and no text ``core.client_json.decode_json`` refuses (orjson already refuses invalid
    UTF-8, lone surrogates and NaN). Anything else falls through, to be refused there (400 with the
    pointer and the rule) or answered by the view (its own 400s for an empty or too long list).
    """
    if request.content_type != "application/json":
        return False
    try:
        data = orjson.loads(request.body)
    except orjson.JSONDecodeError:
        return False
    if not plain_batch(data):
        return False
    request._lean_json = data  # type: ignore[attr-defined]  # an attribute of ours on Django's request, read by batch
    return True


def plain_batch(data: Any) -> bool:
    if type(data) is not dict or len(data) != 1 or type(subjects := data.get("subjects")) is not list:
        return False
    for item in subjects:
        if type(item) is not dict or len(item) != 2:
            return False
        tenant, external_id = item.get("tenant"), item.get("external_id")
        if type(tenant) is not str or type(external_id) is not str or "\x00" in tenant or "\x00" in external_id:
            return False
    return True


ROUTES = [
    LeanRoute(
        SUBJECT,
        frozenset({"GET", "HEAD"}),
        S.PIP_READ,
        "/api/v1/pip/tenants/t/subjects/s",
        lookup,
        lookup_prefetch,
        express=lookup_express,
        express_read=lookup_read,
    ),
    LeanRoute(
        r"^/api/v1/pip/resolve$",
        frozenset({"POST"}),
        S.PIP_READ,
        "/api/v1/pip/resolve",
        batch,
        accepts=parse_batch,
    ),
]

__all__ = ["FALL_THROUGH", "ROUTES"]
