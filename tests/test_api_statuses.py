"""Statuses of refusals (issue 12, row 8): 401 → 405 (with ``Allow``) → 403 → 404, HEAD wherever GET
works, a Bearer challenge, and problem+json for every API error, Django's own included."""

from __future__ import annotations

import pytest
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import path as route
from rest_framework.test import APIClient

from access.keys import api_key_create
from iam_project.urls import urlpatterns as site_urlpatterns
from tests.factories import TenantFactory, UserFactory

pytestmark = pytest.mark.django_db
BEARER_CHALLENGE = 'Bearer realm="iam-service"'


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("a bug")


# This module doubles as a URLconf (pytest.mark.urls) with a view that fails, to see the 500s.
urlpatterns = [route("api/v1/boom", boom), route("console-boom", boom), *site_urlpatterns]
handler500 = "core.observability.server_error"


def problem(response, status: int) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"] == "application/problem+json", response["Content-Type"]
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body


def allowed(response) -> set[str]:  # type: ignore[no-untyped-def]
    return {method.strip() for method in response["Allow"].split(",")}


@pytest.fixture
def acme():  # type: ignore[no-untyped-def]
    tenant = TenantFactory(slug="acme", name="Acme")
    UserFactory(tenant=tenant, external_id="alice")
    return tenant


def key_client(tenant, *scopes: str) -> APIClient:  # type: ignore[no-untyped-def]
    _, raw = api_key_create(name="-".join(scopes), scopes=list(scopes), tenants=[tenant])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


# --- 405 with Allow, in the right place of the order -------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("delete", "/api/v1/tenants/", {"GET", "POST", "HEAD", "OPTIONS"}),
        ("put", "/api/v1/tenants/", {"GET", "POST", "HEAD", "OPTIONS"}),
        ("get", "/api/v1/pip/resolve", {"POST", "OPTIONS"}),
        ("delete", "/api/v1/pip/tenants/acme/subjects/alice", {"GET", "HEAD", "OPTIONS"}),
        ("post", "/api/v1/pip/tenants/acme/bundle.tar.gz", {"GET", "HEAD", "OPTIONS"}),
        ("post", "/api/v1/tenants/acme/users/{u}/", {"GET", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}),
    ],
)
def test_a_method_the_resource_lacks_is_405_with_allow_even_for_a_superuser(api, acme, method, path, allow) -> None:  # type: ignore[no-untyped-def]
    path = path.format(u=acme.users.get().pk)
    response = getattr(api, method)(path)
    problem(response, 405)
    assert allowed(response) == allow


def test_order_of_refusals_401_405_403_404(acme) -> None:  # type: ignore[no-untyped-def]
    other = TenantFactory(slug="other")
    anonymous, pip_only = APIClient(), key_client(acme, "pip:read")
    # 401 first: nobody learns which methods exist without credentials.
    response = anonymous.delete("/api/v1/tenants/")
    problem(response, 401)
    assert response["WWW-Authenticate"] == BEARER_CHALLENGE
    # 405 before 403: the method does not exist, whatever the scope.
    problem(pip_only.delete("/api/v1/tenants/"), 405)
    problem(pip_only.get("/api/v1/pip/resolve"), 405)
    # 403: the method exists, the scope is missing.
    problem(pip_only.get("/api/v1/tenants/"), 403)
    # 404: in scope, but outside the principal's tenants.
    problem(pip_only.get(f"/api/v1/pip/tenants/{other.id}/subjects/alice"), 404)


# --- HEAD wherever GET works ---------------------------------------------------------------------
def test_head_works_on_the_pip_lookup_and_the_bundle(acme) -> None:  # type: ignore[no-untyped-def]
    client = key_client(acme, "pip:read")
    for path in ("/api/v1/pip/tenants/acme/subjects/alice", "/api/v1/pip/tenants/acme/bundle.tar.gz"):
        got, head = client.get(path), client.head(path)
        assert got.status_code == 200 and head.status_code == 200, (path, head.status_code)
        assert head["ETag"] == got["ETag"] and head["Content-Type"] == got["Content-Type"]
        assert (b"".join(head.streaming_content) if head.streaming else head.content) == b""
        assert client.head(path, HTTP_IF_NONE_MATCH=got["ETag"]).status_code == 304
    assert APIClient().head("/api/v1/pip/tenants/acme/subjects/alice").status_code == 401


def test_head_works_on_collections_and_resources(api, acme) -> None:  # type: ignore[no-untyped-def]
    for path in ("/api/v1/tenants/", "/api/v1/tenants/acme/", "/api/v1/tenants/acme/users/"):
        assert api.head(path).status_code == 200, path
    assert key_client(acme, "pip:read").head("/api/v1/tenants/").status_code == 403  # HEAD needs GET's scope


# --- the API's challenge is Bearer -----------------------------------------------------------------
@pytest.mark.parametrize("authorization", [None, "Basic cm9vdDp3cm9uZw==", "Bearer iam_00000000_nope", "Bearer"])
def test_a_401_challenges_with_bearer(superuser, authorization) -> None:  # type: ignore[no-untyped-def]
    client = APIClient()
    if authorization:
        client.credentials(HTTP_AUTHORIZATION=authorization)
    response = client.get("/api/v1/tenants/")
    problem(response, 401)
    assert response["WWW-Authenticate"] == BEARER_CHALLENGE


# --- problem+json for every API error --------------------------------------------------------------
@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("path", ["/api/v1/nope/", "/api/v1/pip/tenants/acme/", "/api/unknown"])
def test_an_unknown_api_route_is_a_404_problem(api, settings, debug, path) -> None:  # type: ignore[no-untyped-def]
    settings.DEBUG = debug
    body = problem(api.get(path), 404)
    assert body["title"] == "Not found"
    problem(Client().get(path), 404)  # anonymous too: an unknown route is no secret


@pytest.mark.urls(__name__)
@pytest.mark.parametrize("debug", [False, True])
def test_a_server_error_under_the_api_is_a_500_problem_and_the_console_keeps_its_page(settings, debug) -> None:  # type: ignore[no-untyped-def]
    settings.DEBUG = debug
    client = Client(raise_request_exception=False)
    body = problem(client.get("/api/v1/boom"), 500)
    assert "a bug" not in body["detail"]  # no internals leak, DEBUG or not
    console = client.get("/console-boom")
    assert console.status_code == 500 and console["Content-Type"].startswith("text/html")
