"""The REST API contract: paths, fields, status codes, problem+json bodies, ETag/If-Match, lists."""

from __future__ import annotations

import json
import re
import time
import uuid
from urllib.parse import urlsplit

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from outbox.models import OutboxEvent
from tenants.models import Tenant
from tests.factories import DefinitionFactory, TenantFactory, UserFactory
from users.models import User

pytestmark = pytest.mark.django_db
TENANT_FIELDS = {
    "id",
    "slug",
    "name",
    "status",
    "events_include_pii",
    "attributes",
    "version",
    "created_at",
    "updated_at",
}
USER_FIELDS = {
    "id",
    "external_id",
    "email",
    "display_name",
    "status",
    "attributes",
    "version",
    "created_at",
    "updated_at",
}


def problem(response, status: int) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["title"] and "detail" in body
    return body


# --- authentication -------------------------------------------------------------------------------
def test_anonymous_gets_401_with_a_challenge(client) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/api/v1/tenants/")
    problem(response, 401)
    assert response["WWW-Authenticate"] == 'Bearer realm="iam-service"'


def test_wrong_password_gets_401(client, superuser) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import basic

    problem(client.get("/api/v1/tenants/", HTTP_AUTHORIZATION=basic("root", "wrong")), 401)


def test_non_staff_console_user_gets_403(client, django_user_model) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import basic

    django_user_model.objects.create_user("plain", password="plain-password-123")
    problem(client.get("/api/v1/tenants/", HTTP_AUTHORIZATION=basic("plain", "plain-password-123")), 403)


def test_session_authentication_works_for_the_console(admin_client_logged_in) -> None:  # type: ignore[no-untyped-def]
    assert admin_client_logged_in.get("/api/v1/tenants/").status_code == 200


# --- tenants ---------------------------------------------------------------------------------------
def test_tenant_create_read_by_id_and_slug(api) -> None:  # type: ignore[no-untyped-def]
    response = api.post("/api/v1/tenants/", {"slug": "acme", "name": "Acme"}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert set(body) == TENANT_FIELDS
    assert body["status"] == "active" and body["version"] == 1 and body["attributes"] == {}
    assert response["ETag"] == '"1"'
    for ref in ("acme", body["id"]):
        got = api.get(f"/api/v1/tenants/{ref}/")
        assert got.status_code == 200 and got.json()["id"] == body["id"] and got["ETag"] == '"1"'


@pytest.mark.parametrize(
    ("slug", "rule_pointer"),
    [
        ("Upper", "/slug"),
        ("-lead", "/slug"),
        ("trail-", "/slug"),
        ("has space", "/slug"),
        ("a" * 64, "/slug"),
        ("5c0d913f-1aae-4de4-b752-1da23bffb90e", "/slug"),
        ("", "/slug"),
    ],
)
def test_tenant_slug_must_be_a_dns_label_and_not_uuid_shaped(api, slug, rule_pointer) -> None:  # type: ignore[no-untyped-def]
    body = problem(api.post("/api/v1/tenants/", {"slug": slug, "name": "x"}, format="json"), 400)
    assert rule_pointer in [e["pointer"] for e in body["errors"]]
    assert not Tenant.objects.exists()


def test_duplicate_slug_is_409(api) -> None:  # type: ignore[no-untyped-def]
    TenantFactory(slug="acme")
    problem(api.post("/api/v1/tenants/", {"slug": "acme", "name": "Again"}, format="json"), 409)
    assert Tenant.objects.count() == 1


def test_unknown_and_read_only_fields_are_400(api) -> None:  # type: ignore[no-untyped-def]
    for extra in ({"id": str(uuid.uuid4())}, {"version": 7}, {"is_superuser": True}, {"tenant": "x"}):
        body = problem(api.post("/api/v1/tenants/", {"slug": "acme", "name": "A", **extra}, format="json"), 400)
        assert body["errors"][0]["rule"] == "unknown_field"
        assert body["errors"][0]["pointer"] == "/" + next(iter(extra))
    assert not Tenant.objects.exists()


def test_malformed_json_and_non_object_bodies_are_400(api) -> None:  # type: ignore[no-untyped-def]
    problem(api.post("/api/v1/tenants/", "{not json", content_type="application/json"), 400)
    problem(api.post("/api/v1/tenants/", "NaN", content_type="application/json"), 400)
    problem(api.post("/api/v1/tenants/", b"\xff\xfe", content_type="application/json"), 400)
    problem(api.post("/api/v1/tenants/", "[1, 2]", content_type="application/json"), 400)
    problem(api.post("/api/v1/tenants/", "slug=a", content_type="application/x-www-form-urlencoded"), 415)


def test_body_over_the_limit_is_413(api, settings) -> None:  # type: ignore[no-untyped-def]
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    big = json.dumps({"slug": "acme", "name": "x" * 2000})
    problem(api.post("/api/v1/tenants/", big, content_type="application/json"), 413)
    assert not Tenant.objects.exists()


def test_body_over_the_limit_without_content_length_is_413(api, settings) -> None:  # type: ignore[no-untyped-def]
    from io import BytesIO

    from core.api.parsers import LimitedJSONParser
    from core.errors import PayloadTooLarge

    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10
    with pytest.raises(PayloadTooLarge):
        LimitedJSONParser().parse(BytesIO(b'{"slug": "0123456789"}'))


def test_tenant_put_patch_and_if_match(api) -> None:  # type: ignore[no-untyped-def]
    tenant = TenantFactory(slug="acme", name="Acme")
    DefinitionFactory(tenant=tenant, key="region", type="string", target="tenant")
    url = "/api/v1/tenants/acme/"
    response = api.patch(url, {"attributes": {"region": "eu"}}, format="json", HTTP_IF_MATCH='"2"')
    problem(response, 412)  # the definition did not change the tenant's version: it is 1
    response = api.patch(url, {"attributes": {"region": "eu"}}, format="json", HTTP_IF_MATCH='"1"')
    assert response.status_code == 200 and response.json()["version"] == 2 and response["ETag"] == '"2"'
    response = api.put(url, {"slug": "acme", "name": "Acme Corp"}, format="json")
    assert response.json()["attributes"] == {} and response.json()["name"] == "Acme Corp"
    assert response.json()["version"] == 3
    problem(api.put(url, {"slug": "acme", "name": "x"}, format="json", HTTP_IF_MATCH="garbage"), 412)
    assert api.patch(url, {"status": "suspended"}, format="json", HTTP_IF_MATCH="*").json()["status"] == "suspended"


def test_unchanged_write_keeps_version_and_emits_nothing(api) -> None:  # type: ignore[no-untyped-def]
    TenantFactory(slug="acme", name="Acme")
    before = OutboxEvent.objects.count()
    response = api.patch("/api/v1/tenants/acme/", {"name": "Acme"}, format="json")
    assert response.json()["version"] == 1
    assert OutboxEvent.objects.count() == before


def test_tenant_delete_is_a_soft_delete_that_hides_everything(api) -> None:  # type: ignore[no-untyped-def]
    user = UserFactory(tenant=TenantFactory(slug="acme"))
    assert api.delete("/api/v1/tenants/acme/").status_code == 204
    problem(api.get("/api/v1/tenants/acme/"), 404)
    problem(api.get(f"/api/v1/tenants/acme/users/{user.id}/"), 404)
    assert api.get("/api/v1/tenants/").json()["results"] == []
    problem(api.post("/api/v1/tenants/", {"slug": "acme", "name": "Again"}, format="json"), 409)  # reserved
    assert Tenant.objects.get(slug="acme").deleted_at is not None and User.objects.filter(pk=user.pk).exists()


def test_unknown_tenant_is_404(api) -> None:  # type: ignore[no-untyped-def]
    problem(api.get("/api/v1/tenants/nope/"), 404)
    problem(api.get(f"/api/v1/tenants/{uuid.uuid4()}/users/"), 404)
    problem(api.get("/api/v1/tenants/nope/attribute-definitions/"), 404)


# --- users -----------------------------------------------------------------------------------------
@pytest.fixture
def acme():  # type: ignore[no-untyped-def]
    tenant = TenantFactory(slug="acme")
    DefinitionFactory(tenant=tenant, key="department", type="enum", allowed_values=["eng", "sales"])
    DefinitionFactory(tenant=tenant, key="level", type="integer")
    DefinitionFactory(tenant=tenant, key="groups", type="string_list")
    return tenant


def test_user_crud(api, acme) -> None:  # type: ignore[no-untyped-def]
    base = "/api/v1/tenants/acme/users/"
    created = api.post(
        base, {"external_id": "alice", "email": "a@example.com", "attributes": {"level": 2}}, format="json"
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert set(body) == USER_FIELDS and body["attributes"] == {"level": 2} and body["status"] == "active"
    url = f"{base}{body['id']}/"
    patched = api.patch(url, {"attributes": {"department": "eng"}}, format="json", HTTP_IF_MATCH='"1"')
    assert patched.json()["attributes"] == {"level": 2, "department": "eng"} and patched["ETag"] == '"2"'
    patched = api.patch(url, {"attributes": {"level": None}}, format="json")
    assert patched.json()["attributes"] == {"department": "eng"}
    put = api.put(url, {"external_id": "alice", "attributes": {"level": 5}}, format="json")
    assert put.json()["attributes"] == {"level": 5} and put.json()["email"] == ""
    problem(api.put(url, {"external_id": "alice"}, format="json", HTTP_IF_MATCH='"1"'), 412)
    assert api.delete(url, HTTP_IF_MATCH=put["ETag"]).status_code == 204
    problem(api.get(url), 404)


def test_external_id_with_slash_and_pipe(api, acme) -> None:  # type: ignore[no-untyped-def]
    response = api.post("/api/v1/tenants/acme/users/", {"external_id": "auth0|team/alice"}, format="json")
    assert response.status_code == 201
    listed = api.get("/api/v1/tenants/acme/users/", {"external_id": "auth0|team/alice"}).json()["results"]
    assert [u["external_id"] for u in listed] == ["auth0|team/alice"]


@pytest.mark.parametrize("external_id", ["", " lead", "trail ", "tab\there", "x" * 256, "new\nline"])
def test_bad_external_id_is_400(api, acme, external_id) -> None:  # type: ignore[no-untyped-def]
    body = problem(api.post("/api/v1/tenants/acme/users/", {"external_id": external_id}, format="json"), 400)
    assert body["errors"][0]["pointer"] == "/external_id"


def test_duplicate_external_id_is_409_but_allowed_in_another_tenant(api, acme) -> None:  # type: ignore[no-untyped-def]
    TenantFactory(slug="other")
    assert api.post("/api/v1/tenants/acme/users/", {"external_id": "a"}, format="json").status_code == 201
    problem(api.post("/api/v1/tenants/acme/users/", {"external_id": "a"}, format="json"), 409)
    assert api.post("/api/v1/tenants/other/users/", {"external_id": "a"}, format="json").status_code == 201


def test_renaming_onto_an_existing_external_id_is_409(api, acme) -> None:  # type: ignore[no-untyped-def]
    UserFactory(tenant=acme, external_id="a")
    b = UserFactory(tenant=acme, external_id="b")
    problem(api.patch(f"/api/v1/tenants/acme/users/{b.id}/", {"external_id": "a"}, format="json"), 409)


def test_user_of_another_tenant_is_404(api, acme) -> None:  # type: ignore[no-untyped-def]
    stranger = UserFactory(tenant=TenantFactory(slug="other"))
    problem(api.get(f"/api/v1/tenants/acme/users/{stranger.id}/"), 404)
    problem(api.patch(f"/api/v1/tenants/acme/users/{stranger.id}/", {"email": ""}, format="json"), 404)
    problem(api.get("/api/v1/tenants/acme/users/not-a-uuid/"), 404)


def test_filters_by_status_external_id_and_attribute(api, acme) -> None:  # type: ignore[no-untyped-def]
    UserFactory(tenant=acme, external_id="a", attributes={"department": "eng", "level": 3, "groups": ["x", "y"]})
    UserFactory(tenant=acme, external_id="b", attributes={"department": "sales", "level": 3})
    UserFactory(tenant=acme, external_id="c", status="disabled", attributes={"department": "eng"})

    def ids(**params):  # type: ignore[no-untyped-def]
        response = api.get("/api/v1/tenants/acme/users/", params)
        assert response.status_code == 200, response.content
        return sorted(u["external_id"] for u in response.json()["results"])

    assert ids(**{"attr.department": "eng"}) == ["a", "c"]
    assert ids(**{"attr.department": "eng", "status": "active"}) == ["a"]
    assert ids(**{"attr.level": "3"}) == ["a", "b"]
    assert ids(**{"attr.groups": "y"}) == ["a"]
    assert ids(external_id="b") == ["b"]
    problem(api.get("/api/v1/tenants/acme/users/", {"attr.level": "three"}), 400)
    problem(api.get("/api/v1/tenants/acme/users/", {"attr.nope": "1"}), 400)
    problem(api.get("/api/v1/tenants/acme/users/", {"status": "sleeping"}), 400)


def test_cursor_pagination_and_ordering(api, acme) -> None:  # type: ignore[no-untyped-def]
    for i in range(7):
        UserFactory(tenant=acme, external_id=f"u{i}")
    seen = []
    url = "/api/v1/tenants/acme/users/?page_size=3&ordering=external_id"
    while url:
        body = api.get(url).json()
        seen += [u["external_id"] for u in body["results"]]
        url = body["next"]
    assert seen == [f"u{i}" for i in range(7)]
    body = api.get("/api/v1/tenants/acme/users/?page_size=100000").json()
    assert len(body["results"]) == 7  # capped at the maximum page size, not an error


def test_user_list_query_count_does_not_grow_with_rows(api, acme) -> None:  # type: ignore[no-untyped-def]
    UserFactory(tenant=acme)
    assert api.get("/api/v1/tenants/acme/users/").status_code == 200  # the tenant's schema, read once and held
    with CaptureQueriesContext(connection) as one:
        assert api.get("/api/v1/tenants/acme/users/").status_code == 200
    for _ in range(20):
        UserFactory(tenant=acme, attributes={"level": 1, "department": "eng", "groups": ["a"]})
    with CaptureQueriesContext(connection) as many:
        assert len(api.get("/api/v1/tenants/acme/users/").json()["results"]) == 21
    assert len(many) == len(one)


# --- attribute definitions ------------------------------------------------------------------------
def test_definition_crud(api, acme) -> None:  # type: ignore[no-untyped-def]
    base = "/api/v1/tenants/acme/attribute-definitions/"
    response = api.post(
        base, {"key": "clearance", "type": "integer", "min_value": 0, "max_value": 5, "pii": True}, format="json"
    )
    assert response.status_code == 201, response.content
    assert {
        "key",
        "target",
        "type",
        "required",
        "allowed_values",
        "pattern",
        "min_value",
        "max_value",
        "max_length",
        "description",
        "pii",
    } <= set(response.json())
    assert api.get(f"{base}clearance/").json()["max_value"] == 5
    assert api.patch(f"{base}clearance/", {"description": "Level"}, format="json").json()["version"] == 2
    body = problem(api.patch(f"{base}clearance/", {"type": "string"}, format="json"), 400)
    assert body["errors"][0]["rule"] == "read_only"
    assert api.delete(f"{base}clearance/").status_code == 204
    problem(api.get(f"{base}clearance/"), 404)


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({"key": "Bad-Key", "type": "string"}, "/key"),
        ({"key": "x", "type": "colour"}, "/type"),
        ({"key": "x", "type": "enum"}, "/allowed_values"),
        ({"key": "x", "type": "string", "pattern": "("}, "/pattern"),
        ({"key": "x", "type": "integer", "min_value": 5, "max_value": 1}, "/max_value"),
        ({"key": "x", "type": "boolean", "max_length": 3}, "/max_length"),
        ({"key": "x", "type": "integer", "allowed_values": ["a"]}, "/allowed_values"),
        ({"key": "x", "type": "string", "target": "robot"}, "/target"),
    ],
)
def test_bad_definitions_are_400(api, acme, body, pointer) -> None:  # type: ignore[no-untyped-def]
    response = problem(api.post("/api/v1/tenants/acme/attribute-definitions/", body, format="json"), 400)
    assert pointer in [e["pointer"] for e in response["errors"]]


EVIL_PATTERN = "^(a+)+$"  # exponential backtracking in Python's re on "aaa…a!"


def test_a_catastrophic_backtracking_pattern_validates_long_values_in_linear_time(api, acme, settings) -> None:  # type: ignore[no-untyped-def]
    settings.IAM_MAX_ATTRIBUTE_VALUE_BYTES = 100_000
    base = "/api/v1/tenants/acme/attribute-definitions/"
    assert api.post(base, {"key": "token", "type": "string", "pattern": EVIL_PATTERN}, format="json").status_code == 201
    users = "/api/v1/tenants/acme/users/"
    started = time.monotonic()

    body = problem(
        api.post(users, {"external_id": "evil", "attributes": {"token": "a" * 10_000 + "!"}}, format="json"), 400
    )
    good = api.post(users, {"external_id": "fine", "attributes": {"token": "a" * 10_000}}, format="json")

    # With backtracking, 35 characters took 30 s and 10,000 would take longer than the universe has.
    assert time.monotonic() - started < 30
    assert [(e["pointer"], e["rule"]) for e in body["errors"]] == [("/attributes/token", "pattern")]
    assert good.status_code == 201, good.content
    assert not User.objects.filter(external_id="evil").exists()


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        (r"(a)\1", "backreference"),
        (r"(?=a)a", "lookahead"),
        (r"(?<!x)y", "lookbehind"),
        (r"((a{100}){100}){100}", "too much memory"),
    ],
)
def test_a_pattern_the_linear_time_engine_cannot_run_is_400(api, acme, pattern, why) -> None:  # type: ignore[no-untyped-def]
    response = api.post(
        "/api/v1/tenants/acme/attribute-definitions/", {"key": "x", "type": "string", "pattern": pattern}, format="json"
    )

    body = problem(response, 400)
    assert [(e["pointer"], e["rule"]) for e in body["errors"]] == [("/pattern", "pattern")]
    assert "RE2" in body["errors"][0]["detail"]
    assert not acme.attribute_definitions.filter(key="x").exists()


def test_a_pattern_longer_than_the_bound_is_400(api, acme) -> None:  # type: ignore[no-untyped-def]
    response = api.post(
        "/api/v1/tenants/acme/attribute-definitions/",
        {"key": "x", "type": "string", "pattern": "a" * 501},
        format="json",
    )

    assert "/pattern" in [e["pointer"] for e in problem(response, 400)["errors"]]


def test_definition_changes_never_invalidate_stored_values(api, acme) -> None:  # type: ignore[no-untyped-def]
    UserFactory(tenant=acme, attributes={"level": 9, "department": "eng"})
    base = "/api/v1/tenants/acme/attribute-definitions/"
    problem(api.patch(f"{base}level/", {"max_value": 5}, format="json"), 409)
    problem(api.patch(f"{base}department/", {"allowed_values": ["sales"]}, format="json"), 409)
    problem(api.delete(f"{base}level/"), 409)
    problem(api.post(base, {"key": "badge", "type": "string", "required": True}, format="json"), 409)
    problem(api.post(base, {"key": "level", "type": "string"}, format="json"), 409)  # duplicate key
    assert api.patch(f"{base}level/", {"max_value": 10}, format="json").status_code == 200


def test_openapi_schema_and_docs_page(api) -> None:  # type: ignore[no-untyped-def]
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    paths = json.loads(schema.content)["paths"]
    assert "/api/v1/tenants/{tenant}/users/{user_id}/" in paths
    assert "/api/v1/tenants/{tenant}/attribute-definitions/{key}/" in paths
    assert api.get("/api/docs/").status_code == 200


@pytest.mark.parametrize("page", ["/api/docs/", "/api/redoc/"])
def test_api_docs_pages_load_their_assets_from_this_service_only(api, page) -> None:  # type: ignore[no-untyped-def]
    response = api.get(page)

    assert response.status_code == 200
    html = response.content.decode()
    assets = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    assert any(asset.endswith(".js") for asset in assets), assets
    for asset in assets:
        assert urlsplit(asset).netloc == "" and not asset.startswith("//"), f"{page} loads {asset} from another host"
        served = api.get(asset)
        assert served.status_code == 200, asset
        assert b"".join(served.streaming_content if served.streaming else [served.content]), f"{asset} is empty"
    assert "cdn.jsdelivr.net" not in html and "@latest" not in html


def test_probes(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}


def test_user_model_is_named_apart_from_console_logins() -> None:
    assert User._meta.verbose_name == "policy user"


@pytest.mark.parametrize(
    "url",
    [
        "/admin/users/user/",
        "/admin/tenants/tenant/",
        "/admin/attributes/attributedefinition/",
        "/admin/outbox/outboxevent/",
        "/admin/audit/auditrecord/",
    ],
)
def test_console_changelist_query_count_is_the_same_for_1_and_50_rows(admin_client_logged_in, url) -> None:  # type: ignore[no-untyped-def]
    tenant = TenantFactory(slug="acme")
    for index in range(10):
        DefinitionFactory(tenant=tenant, key=f"k{index}", type="integer")
    values = {f"k{index}": index for index in range(10)}
    UserFactory(tenant=tenant, external_id="u-first", attributes=values)
    admin_client_logged_in.get(url)  # warm the session and content types
    with CaptureQueriesContext(connection) as one:
        assert admin_client_logged_in.get(url).status_code == 200
    for index in range(49):
        other = TenantFactory(slug=f"t{index}")
        DefinitionFactory(tenant=other, key="k0", type="integer")
        UserFactory(tenant=tenant, external_id=f"u{index}", attributes=values)
    with CaptureQueriesContext(connection) as fifty:
        assert admin_client_logged_in.get(url).status_code == 200
    assert len(fifty) == len(one), [q["sql"][:120] for q in fifty.captured_queries]
