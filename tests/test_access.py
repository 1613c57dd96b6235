"""Access control: every endpoint × principal × tenant, keys, the fail-closed base, audit, console scoping."""

from __future__ import annotations

import io
import logging
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from rest_framework.test import APIClient

from access.keys import api_key_create, api_key_revoke
from access.models import ApiKey
from access.permissions import ScopedView
from audit.models import AuditRecord
from tests.conftest import ADMIN_PASSWORD, TENANT_ADMIN_PASSWORD, basic
from tests.factories import DefinitionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(superuser, two_tenants):  # type: ignore[no-untyped-def]
    """Tenants A and B, each with a definition and a user; the five principals of the matrix."""
    a, b, ua, ub = (two_tenants[name] for name in ("a", "b", "ua", "ub"))
    _, pip_key = api_key_create(name="pip-a", scopes=["pip:read"], tenants=[a])
    _, write_key = api_key_create(name="writer-a", scopes=["directory:write"], tenants=[a])
    principals = {
        "anonymous": None,
        "pip_key_a": f"Bearer {pip_key}",
        "write_key_a": f"Bearer {write_key}",
        "tenant_admin_a": basic("tadmin", TENANT_ADMIN_PASSWORD),
        "superuser": basic("root", ADMIN_PASSWORD),
    }
    return {"a": a, "b": b, "ua": ua, "ub": ub, "principals": principals}


P = ("anonymous", "pip_key_a", "write_key_a", "tenant_admin_a", "superuser")
# (name, method, path, body, expected status on tenant A's object, on tenant B's) per principal in P order.
MATRIX = [
    ("tenant list", "get", "/api/v1/tenants/", None, (401, 403, 200, 200, 200), None),
    ("tenant create", "post", "/api/v1/tenants/", {"slug": "new-one", "name": "N"}, (401, 403, 403, 403, 201), None),
    ("tenant read", "get", "/api/v1/tenants/{t}/", None, (401, 403, 200, 200, 200), (401, 403, 404, 404, 200)),
    (
        "tenant patch",
        "patch",
        "/api/v1/tenants/{t}/",
        {"name": "Renamed"},
        (401, 403, 200, 200, 200),
        (401, 403, 404, 404, 200),
    ),
    ("tenant delete", "delete", "/api/v1/tenants/{t}/", None, (401, 403, 403, 403, 204), (401, 403, 403, 403, 204)),
    ("user list", "get", "/api/v1/tenants/{t}/users/", None, (401, 403, 200, 200, 200), (401, 403, 404, 404, 200)),
    (
        "user create",
        "post",
        "/api/v1/tenants/{t}/users/",
        {"external_id": "new"},
        (401, 403, 201, 201, 201),
        (401, 403, 404, 404, 201),
    ),
    ("user read", "get", "/api/v1/tenants/{t}/users/{u}/", None, (401, 403, 200, 200, 200), (401, 403, 404, 404, 200)),
    (
        "user patch",
        "patch",
        "/api/v1/tenants/{t}/users/{u}/",
        {"email": "x@example.com"},
        (401, 403, 200, 200, 200),
        (401, 403, 404, 404, 200),
    ),
    (
        "user delete",
        "delete",
        "/api/v1/tenants/{t}/users/{u}/",
        None,
        (401, 403, 204, 204, 204),
        (401, 403, 404, 404, 204),
    ),
    (
        "user of other tenant via own path",
        "get",
        "/api/v1/tenants/tenant-a/users/{other_u}/",
        None,
        (401, 403, 404, 404, 404),
        None,
    ),
    (
        "definition list",
        "get",
        "/api/v1/tenants/{t}/attribute-definitions/",
        None,
        (401, 403, 200, 200, 200),
        (401, 403, 404, 404, 200),
    ),
    (
        "definition read",
        "get",
        "/api/v1/tenants/{t}/attribute-definitions/level/",
        None,
        (401, 403, 200, 200, 200),
        (401, 403, 404, 404, 200),
    ),
    (
        "definition create",
        "post",
        "/api/v1/tenants/{t}/attribute-definitions/",
        {"key": "badge", "type": "string"},
        (401, 403, 403, 201, 201),
        (401, 403, 403, 404, 201),
    ),
    (
        "definition patch",
        "patch",
        "/api/v1/tenants/{t}/attribute-definitions/level/",
        {"description": "d"},
        (401, 403, 403, 200, 200),
        (401, 403, 403, 404, 200),
    ),
]
CASES = [
    (name, method, path, body, which, principal, expected[index])
    for name, method, path, body, on_a, on_b in MATRIX
    for which, expected in (("a", on_a), ("b", on_b))
    if expected is not None
    for index, principal in enumerate(P)
]


@pytest.mark.parametrize(
    ("name", "method", "path", "body", "which", "principal", "expected"),
    CASES,
    ids=[f"{c[0]}-{c[4]}-{c[5]}" for c in CASES],
)
def test_matrix(world, name, method, path, body, which, principal, expected) -> None:  # type: ignore[no-untyped-def]
    tenant, user = (world["a"], world["ua"]) if which == "a" else (world["b"], world["ub"])
    other = world["ub"]
    url = path.format(t=tenant.slug, u=user.id, other_u=other.id)
    client = APIClient()
    header = world["principals"][principal]
    if header:
        client.credentials(HTTP_AUTHORIZATION=header)
    response = getattr(client, method)(url, body, format="json") if body is not None else getattr(client, method)(url)
    assert response.status_code == expected, response.content
    if principal not in ("superuser",) and response.content:
        content = response.content.decode()
        for secret in ("tenant-b", "Bravo", "bob-of-b", str(world["b"].id), str(world["ub"].id)):
            assert secret not in content, f"{principal} saw {secret!r} of tenant B"


@pytest.fixture
def tenant_writer():  # type: ignore[no-untyped-def]
    """A key with tenants:write (keys with it are for every tenant)."""
    _, raw = api_key_create(name="tenants-admin", scopes=["tenants:write", "directory:write"])
    return f"Bearer {raw}"


def _client(header: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    return client


LIFECYCLE_CHANGES = [
    ("suspend", "patch", {"status": "suspended"}, "active"),
    ("resume", "patch", {"status": "active"}, "suspended"),
    ("resume by put", "put", {"slug": "tenant-a", "name": "Alpha"}, "suspended"),
    ("rename slug", "patch", {"slug": "renamed-a"}, "active"),
]


@pytest.mark.parametrize(("change", "method", "body", "status_before"), LIFECYCLE_CHANGES)
def test_directory_write_alone_cannot_change_a_tenants_status_or_slug(
    world, change, method, body, status_before
) -> None:  # type: ignore[no-untyped-def]
    from tenants.models import Tenant

    if status_before == "suspended":
        from tenants.services import tenant_suspend

        tenant_suspend(tenant=world["a"])
    before = Tenant.objects.get(pk=world["a"].pk)

    response = getattr(_client(world["principals"]["write_key_a"]), method)(
        "/api/v1/tenants/tenant-a/", body, format="json"
    )

    assert response.status_code == 403, response.content
    assert response["Content-Type"].startswith("application/problem+json")
    assert "tenants:write" in response.json()["detail"]
    after = Tenant.objects.get(pk=world["a"].pk)
    assert (after.slug, after.status, after.version) == (before.slug, before.status, before.version)


@pytest.mark.parametrize(("change", "method", "body", "status_before"), LIFECYCLE_CHANGES)
def test_tenants_write_can_change_a_tenants_status_and_slug(
    world, tenant_writer, change, method, body, status_before
) -> None:  # type: ignore[no-untyped-def]
    from tenants.models import Tenant

    if status_before == "suspended":
        from tenants.services import tenant_suspend

        tenant_suspend(tenant=world["a"])

    response = getattr(_client(tenant_writer), method)("/api/v1/tenants/tenant-a/", body, format="json")

    assert response.status_code == 200, response.content
    after = Tenant.objects.get(pk=world["a"].pk)
    assert after.slug == body.get("slug", "tenant-a")
    assert after.status == body.get("status", "active")


def test_directory_write_still_writes_a_tenants_name_and_attributes(world) -> None:  # type: ignore[no-untyped-def]
    from tenants.models import Tenant

    body = {"slug": "tenant-a", "status": "active", "name": "Alpha two", "attributes": {}}
    response = _client(world["principals"]["write_key_a"]).patch("/api/v1/tenants/tenant-a/", body, format="json")

    assert response.status_code == 200, response.content
    assert Tenant.objects.get(pk=world["a"].pk).name == "Alpha two"


def _patterns(resolver, prefix=""):  # type: ignore[no-untyped-def]
    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver):
            yield from _patterns(pattern, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern), pattern.callback


PUBLIC = {"api/schema/", "api/docs/", "api/redoc/", "healthz", "readyz", "metrics"}


def test_every_api_route_is_scoped_for_every_method() -> None:
    checked = 0
    for route, callback in _patterns(get_resolver()):
        if route.startswith("admin/") or route in PUBLIC:
            continue
        view_class = getattr(callback, "cls", None)
        assert view_class is not None and issubclass(view_class, ScopedView), f"{route} is not a ScopedView"
        actions = getattr(callback, "actions", None) or {
            method: method for method in ("get", "post", "put", "patch", "delete") if hasattr(view_class, method)
        }
        for method, action in actions.items():
            assert view_class.scopes.get(action), f"{route} {method.upper()} ({action}) declares no scope"
            checked += 1
    assert checked >= 15


def test_an_unscoped_view_is_refused_even_to_superusers(rf, superuser) -> None:  # type: ignore[no-untyped-def]
    from rest_framework.response import Response
    from rest_framework.views import APIView

    class Forgotten(ScopedView, APIView):
        def get(self, request):  # type: ignore[no-untyped-def]
            return Response({"leak": True})

    request = rf.get("/x", HTTP_AUTHORIZATION=basic("root", ADMIN_PASSWORD))
    assert Forgotten.as_view()(request).status_code == 403


# --- keys ------------------------------------------------------------------------------------------
def test_create_api_key_command_prints_the_key_once_and_stores_only_a_hash(world) -> None:  # type: ignore[no-untyped-def]
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "create_api_key",
        "--name",
        "opa",
        "--scopes",
        "pip:read,directory:read",
        "--tenants",
        "tenant-a",
        stdout=out,
        stderr=err,
    )
    raw = out.getvalue().strip()
    key = ApiKey.objects.get(name="opa")
    assert raw.startswith(f"iam_{key.prefix}_") and len(raw) > 40
    assert raw not in key.key_hash and key.prefix in err.getvalue() and raw not in err.getvalue()
    assert set(key.scopes) == {"pip:read", "directory:read"} and not key.all_tenants
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert [t["slug"] for t in client.get("/api/v1/tenants/").json()["results"]] == ["tenant-a"]


def test_unknown_scope_or_tenant_is_refused(world) -> None:  # type: ignore[no-untyped-def]
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="unknown scope"):
        call_command("create_api_key", "--name", "x", "--scopes", "root:everything", stdout=io.StringIO())
    with pytest.raises(CommandError, match="unknown tenants"):
        call_command("create_api_key", "--name", "x", "--scopes", "pip:read", "--tenants", "nope", stdout=io.StringIO())


@pytest.mark.parametrize("days", ["0", "-1", "-30", "1.5", "soon"])
def test_create_api_key_refuses_expiry_days_that_are_not_positive(world, days) -> None:  # type: ignore[no-untyped-def]
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="--expires-days: must be a positive whole number of days"):
        call_command(
            "create_api_key", "--name", "x", "--scopes", "pip:read", "--expires-days", days, stdout=io.StringIO()
        )

    assert not ApiKey.objects.filter(name="x").exists()


@pytest.mark.parametrize(
    ("args", "expires_in_days"), [(["--expires-days", "1"], 1), (["--expires-days", "90"], 90), ([], None)]
)
def test_create_api_key_expiry_is_the_given_days_or_never(world, args, expires_in_days) -> None:  # type: ignore[no-untyped-def]
    before = timezone.now()
    call_command(
        "create_api_key", "--name", "x", "--scopes", "pip:read", *args, stdout=io.StringIO(), stderr=io.StringIO()
    )
    after = timezone.now()

    expires_at = ApiKey.objects.get(name="x").expires_at
    if expires_in_days is None:
        assert expires_at is None
    else:
        assert before + timedelta(days=expires_in_days) <= expires_at <= after + timedelta(days=expires_in_days)


def test_revoked_expired_unknown_and_malformed_keys_get_401(world) -> None:  # type: ignore[no-untyped-def]
    key, raw = api_key_create(name="short-lived", scopes=["directory:read"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert client.get("/api/v1/tenants/").status_code == 200
    api_key_revoke(key=key)
    assert client.get("/api/v1/tenants/").status_code == 401  # the very next request
    _, raw_expired = api_key_create(
        name="old", scopes=["directory:read"], expires_at=timezone.now() - timedelta(seconds=1)
    )
    for header in (f"Bearer {raw_expired}", "Bearer iam_nothing_here", "Bearer", "Bearer a b", f"Bearer {raw}x"):
        client.credentials(HTTP_AUTHORIZATION=header)
        response = client.get("/api/v1/tenants/")
        assert response.status_code == 401, header
        assert response["Content-Type"] == "application/problem+json"


def test_last_used_is_written_at_most_once_a_minute(world) -> None:  # type: ignore[no-untyped-def]
    key, raw = api_key_create(name="busy", scopes=["directory:read"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    with CaptureQueriesContext(connection) as queries:
        for _ in range(5):
            assert client.get("/api/v1/tenants/").status_code == 200
    updates = [q["sql"] for q in queries.captured_queries if q["sql"].startswith('UPDATE "access_apikey"')]
    assert len(updates) == 1
    key.refresh_from_db()
    assert key.last_used_at is not None


def test_a_key_never_appears_in_logs_or_audit(world, caplog) -> None:  # type: ignore[no-untyped-def]
    _, raw = api_key_create(name="quiet", scopes=["directory:write"], tenants=[world["a"]])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    with caplog.at_level(logging.DEBUG):
        assert (
            client.post("/api/v1/tenants/tenant-a/users/", {"external_id": "logged"}, format="json").status_code == 201
        )
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}broken")
        assert client.get("/api/v1/tenants/").status_code == 401
    secret_part = raw.split("_", 2)[2]
    everything_logged = caplog.text + " ".join(str(record.__dict__) for record in caplog.records)
    assert secret_part not in everything_logged
    assert any(getattr(record, "principal", "") == "key:quiet" for record in caplog.records)  # by name
    record = AuditRecord.objects.get(object_repr="logged")
    assert record.actor_kind == "key" and record.actor == "quiet"
    assert secret_part not in str(record.changes)


def test_throttling_answers_429_with_retry_after(world, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from django.core.cache import cache

    from access.throttling import PrincipalRateThrottle

    cache.clear()
    monkeypatch.setattr(PrincipalRateThrottle, "THROTTLE_RATES", {"principal": "3/min"})
    _, raw = api_key_create(name="hasty", scopes=["directory:read"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    statuses = [client.get("/api/v1/tenants/").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    response = client.get("/api/v1/tenants/")
    assert int(response["Retry-After"]) > 0 and response["Content-Type"] == "application/problem+json"
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=world["principals"]["superuser"])
    assert other.get("/api/v1/tenants/").status_code == 200  # a bucket per principal
    cache.clear()


def test_mass_assignment_fields_are_400(api, world) -> None:  # type: ignore[no-untyped-def]
    for field, value in (
        ("tenant", str(world["b"].id)),
        ("id", str(world["ub"].id)),
        ("version", 99),
        ("is_superuser", True),
    ):
        response = api.post("/api/v1/tenants/tenant-a/users/", {"external_id": "m", field: value}, format="json")
        assert response.status_code == 400 and response.json()["errors"][0]["pointer"] == f"/{field}"


# --- audit -----------------------------------------------------------------------------------------
def test_audit_records_who_what_and_redacts_pii(world, admin_client_logged_in) -> None:  # type: ignore[no-untyped-def]
    a = world["a"]
    DefinitionFactory(tenant=a, key="ssn", type="string", pii=True)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=world["principals"]["tenant_admin_a"])
    user_id = str(world["ua"].id)
    response = client.patch(
        f"/api/v1/tenants/tenant-a/users/{user_id}/", {"attributes": {"ssn": "123-45-6789", "level": 3}}, format="json"
    )
    assert response.status_code == 200
    record = AuditRecord.objects.filter(object_id=user_id).order_by("-id").first()
    # An API call with HTTP Basic is recorded as such, not as a console change.
    assert record.actor_kind == "basic" and record.actor == "tadmin" and record.action == "update"
    assert record.changes["attributes.ssn"] == [None, "***"]
    assert record.changes["attributes.level"] == [1, 3]
    assert "123-45-6789" not in str(record.changes)
    assert record.event_id is not None and record.tenant_id == a.id
    created = AuditRecord.objects.get(object_repr="alice-of-a", action="create")
    assert created.actor_kind == "system"  # created by the fixture, outside any request


def test_a_console_change_is_audited_as_console_and_a_basic_api_call_as_basic(
    world, admin_client_logged_in, caplog
) -> None:  # type: ignore[no-untyped-def]
    user_id = str(world["ua"].id)
    page = admin_client_logged_in.get(f"/admin/users/user/{user_id}/change/")
    form = {name: value for name, value in page.context["adminform"].form.initial.items() if value is not None}
    response = admin_client_logged_in.post(
        f"/admin/users/user/{user_id}/change/", {**form, "display_name": "Alice", "attr__level": "2"}
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    console = AuditRecord.objects.filter(object_id=user_id).order_by("-id").first()
    assert (console.actor_kind, console.actor) == ("console", "root")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=world["principals"]["superuser"])
    with caplog.at_level("INFO", logger="iam.request"):
        response = client.patch(f"/api/v1/tenants/tenant-a/users/{user_id}/", {"display_name": "A"}, format="json")
    assert response.status_code == 200
    assert [r.principal for r in caplog.records if r.name == "iam.request"] == ["basic:root"]
    basic = AuditRecord.objects.filter(object_id=user_id).order_by("-id").first()
    assert basic.pk != console.pk and (basic.actor_kind, basic.actor) == ("basic", "root")


def test_audit_log_is_read_only_in_the_console_even_for_superusers(admin_client_logged_in, world) -> None:  # type: ignore[no-untyped-def]
    record = AuditRecord.objects.first()
    assert admin_client_logged_in.get("/admin/audit/auditrecord/").status_code == 200
    assert admin_client_logged_in.get("/admin/audit/auditrecord/add/").status_code == 403
    assert (
        admin_client_logged_in.post(f"/admin/audit/auditrecord/{record.pk}/delete/", {"post": "yes"}).status_code == 403
    )
    assert admin_client_logged_in.post(f"/admin/audit/auditrecord/{record.pk}/change/", {}).status_code == 403
    assert AuditRecord.objects.filter(pk=record.pk).exists()


def test_purge_audit_by_retention(world) -> None:  # type: ignore[no-untyped-def]
    total = AuditRecord.objects.count()
    old = AuditRecord.objects.first()
    AuditRecord.objects.filter(pk=old.pk).update(at=timezone.now() - timedelta(days=400))
    out = io.StringIO()
    call_command("purge_audit", stdout=out)
    assert "deleted 1" in out.getvalue() and AuditRecord.objects.count() == total - 1


# --- console scoping -------------------------------------------------------------------------------
@pytest.fixture
def tadmin_client(client, world):  # type: ignore[no-untyped-def]
    # Through the login form: django-axes' backend needs the request, which Client.login() does not pass.
    response = client.post("/admin/login/", {"username": "tadmin", "password": TENANT_ADMIN_PASSWORD})
    assert response.status_code == 302, response.status_code
    return client


def test_tenant_administrator_sees_only_their_tenant(tadmin_client, world) -> None:  # type: ignore[no-untyped-def]
    page = tadmin_client.get("/admin/users/user/").content.decode()
    assert "alice-of-a" in page and "bob-of-b" not in page
    assert tadmin_client.get(f"/admin/users/user/{world['ua'].pk}/change/").status_code == 200
    assert tadmin_client.get(f"/admin/users/user/{world['ub'].pk}/change/").status_code == 404
    assert tadmin_client.get(f"/admin/tenants/tenant/{world['b'].pk}/change/").status_code == 404
    assert tadmin_client.get("/admin/tenants/tenant/add/").status_code == 403
    autocomplete = tadmin_client.get(
        "/admin/autocomplete/", {"app_label": "users", "model_name": "user", "field_name": "tenant", "term": "tenant"}
    ).json()
    assert [r["text"] for r in autocomplete["results"]] == ["tenant-a"]
    form = tadmin_client.get("/admin/users/user/add/").content.decode()
    assert "tenant-b" not in form
    assert tadmin_client.get("/admin/access/apikey/").status_code == 403
    assert tadmin_client.get("/admin/outbox/outboxevent/").status_code == 403


def test_tenant_administrator_cannot_write_into_another_tenant(tadmin_client, world) -> None:  # type: ignore[no-untyped-def]
    from users.models import User

    form = {
        "tenant": world["b"].pk,
        "external_id": "smuggled",
        "email": "",
        "display_name": "",
        "status": "active",
        "attributes": "{}",
    }
    response = tadmin_client.post("/admin/users/user/add/", form)
    assert response.status_code == 200 and "tenant" in response.context["adminform"].form.errors
    response = tadmin_client.post(
        "/admin/users/user/", {"action": "delete_selected", "_selected_action": [str(world["ub"].pk)], "post": "yes"}
    )
    assert User.objects.filter(pk=world["ub"].pk).exists()
    assert not User.objects.filter(external_id="smuggled").exists()


def test_production_settings_pass_check_deploy(tmp_path) -> None:
    import os
    import subprocess
    import sys

    from django.conf import settings

    env = {
        **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "IAM_ENV", "DJANGO_SETTINGS_MODULE")},
        "IAM_ENV": "production",
        "SECRET_KEY": "k" * 20 + "Q7x!pL0z#mN4vB8c&R2tY6u^W1eS5dF9gH3jK",
        "ALLOWED_HOSTS": "iam.example.com",
        "DATABASE_URL": "postgres://iam:pw@db.example.com:5432/iam",
        "EVENT_BUS_URL": "nats://nats.example.com:4222",
        "CELERY_BROKER_URL": "redis://redis.example.com:6379/0",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
