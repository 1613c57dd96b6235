"""The Policy Information Point: lookups, ETags, batch, AuthZEN shape, OPA bundles, the cache."""

from __future__ import annotations

import io
import json
import tarfile
from datetime import timedelta
from urllib.parse import quote

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from access.keys import api_key_create
from attributes import services as attribute_services
from tenants import services as tenant_services
from tests.factories import DefinitionFactory, TenantFactory, UserFactory
from users import services as user_services

pytestmark = pytest.mark.django_db


@pytest.fixture
def acme():  # type: ignore[no-untyped-def]
    tenant = TenantFactory(slug="acme", name="Acme")
    DefinitionFactory(tenant=tenant, key="department", type="enum", allowed_values=["eng", "sales"])
    DefinitionFactory(tenant=tenant, key="level", type="integer")
    DefinitionFactory(tenant=tenant, key="region", type="string", target="tenant")
    return tenant_services.tenant_update(tenant=tenant, attributes={"region": "eu"})


@pytest.fixture
def pip_client(acme):  # type: ignore[no-untyped-def]
    _, raw = api_key_create(name="opa", scopes=["pip:read"], tenants=[acme])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def url(tenant: str, external_id: str) -> str:
    return f"/api/v1/pip/tenants/{tenant}/subjects/{quote(external_id, safe='')}"


def test_lookup_by_slug_and_id_with_slash_in_external_id(pip_client, acme) -> None:  # type: ignore[no-untyped-def]
    user = UserFactory(tenant=acme, external_id="auth0|team/alice", attributes={"department": "eng", "level": 3})
    for ref in ("acme", str(acme.id)):
        response = pip_client.get(url(ref, "auth0|team/alice"))
        assert response.status_code == 200, response.content
        body = json.loads(response.content)
        assert body["id"] == str(user.id) and body["external_id"] == "auth0|team/alice"
        assert body["status"] == "active" and body["attributes"] == {"department": "eng", "level": 3}
        assert body["tenant"] == {
            "id": str(acme.id),
            "slug": "acme",
            "status": "active",
            "attributes": {"region": "eu"},
            "version": acme.version,
        }
        assert response["ETag"] and "max-age" in response["Cache-Control"]
    unencoded = pip_client.get("/api/v1/pip/tenants/acme/subjects/auth0|team/alice")
    assert unencoded.status_code == 200


def test_disabled_user_and_suspended_tenant_are_reported_as_such(pip_client, acme) -> None:  # type: ignore[no-untyped-def]
    user = UserFactory(tenant=acme, external_id="bob", attributes={"level": 1})
    user_services.user_update(user=user, status="disabled")
    tenant_services.tenant_update(tenant=acme, status="suspended")
    body = json.loads(pip_client.get(url("acme", "bob")).content)
    assert body["status"] == "disabled" and body["tenant"]["status"] == "suspended"
    assert body["attributes"] == {"level": 1}  # still the attributes: the policy decides


def test_unknown_tenant_subject_or_another_tenants_subject_is_404(pip_client, acme) -> None:  # type: ignore[no-untyped-def]
    other = TenantFactory(slug="other")
    UserFactory(tenant=other, external_id="stranger")
    for path in (url("nope", "x"), url("acme", "nobody"), url("other", "stranger"), url(str(other.id), "stranger")):
        response = pip_client.get(path)
        assert response.status_code == 404 and response["Content-Type"] == "application/problem+json"
        assert b"stranger" not in response.content


def test_keys_without_pip_read_are_refused(acme) -> None:  # type: ignore[no-untyped-def]
    UserFactory(tenant=acme, external_id="alice")
    _, raw = api_key_create(name="reader", scopes=["directory:read"], tenants=[acme])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert client.get(url("acme", "alice")).status_code == 403
    assert client.post("/api/v1/pip/resolve", {"subjects": []}, format="json").status_code == 403
    assert APIClient().get(url("acme", "alice")).status_code == 401


def test_authzen_shape(pip_client, acme) -> None:  # type: ignore[no-untyped-def]
    UserFactory(tenant=acme, external_id="alice", attributes={"department": "eng"})
    body = json.loads(pip_client.get(url("acme", "alice") + "?format=authzen").content)
    assert body["type"] == "user" and body["id"] == "alice"
    assert body["properties"]["department"] == "eng"
    assert body["properties"]["iam:status"] == "active" and body["properties"]["iam:tenant"]["slug"] == "acme"
    assert pip_client.get(url("acme", "alice") + "?format=xml").status_code == 400


@pytest.mark.parametrize(
    "change",
    ["user field", "user attribute", "tenant attribute", "tenant field", "definition change", "definition create"],
)
def test_etag_and_304_follow_every_kind_of_change(pip_client, acme, change) -> None:  # type: ignore[no-untyped-def]
    user = UserFactory(tenant=acme, external_id="alice", attributes={"level": 1})
    first = pip_client.get(url("acme", "alice"))
    etag = first["ETag"]
    assert pip_client.get(url("acme", "alice"), HTTP_IF_NONE_MATCH=etag).status_code == 304
    assert pip_client.get(url("acme", "alice"), HTTP_IF_NONE_MATCH=f"W/{etag}").status_code == 304
    if change == "user field":
        user_services.user_update(user=user, email="new@example.com")
    elif change == "user attribute":
        user_services.user_update(user=user, attributes={"level": 2}, merge_attributes=True)
    elif change == "tenant attribute":
        tenant_services.tenant_update(tenant=acme, attributes={"region": "us"})
    elif change == "tenant field":
        tenant_services.tenant_update(tenant=acme, status="suspended")
    elif change == "definition change":
        definition = acme.attribute_definitions.get(key="level")
        attribute_services.definition_update(definition=definition, description="Clearance")
    else:
        DefinitionFactory(tenant=acme, key="badge", type="string")
    response = pip_client.get(url("acme", "alice"), HTTP_IF_NONE_MATCH=etag)
    assert response.status_code == 200 and response["ETag"] != etag


def test_batch_with_found_not_found_and_out_of_reach(pip_client, acme) -> None:  # type: ignore[no-untyped-def]
    UserFactory(tenant=acme, external_id="alice", attributes={"level": 1})
    UserFactory(tenant=acme, external_id="team/bob")
    other = TenantFactory(slug="other")
    UserFactory(tenant=other, external_id="stranger")
    subjects = [
        {"tenant": "acme", "external_id": "alice"},
        {"tenant": str(acme.id), "external_id": "team/bob"},
        {"tenant": "acme", "external_id": "nobody"},
        {"tenant": "other", "external_id": "stranger"},
        {"tenant": "nope", "external_id": "alice"},
    ]
    response = pip_client.post("/api/v1/pip/resolve", {"subjects": subjects}, format="json")
    assert response.status_code == 200
    results = json.loads(response.content)["results"]
    assert [r["found"] for r in results] == [True, True, False, False, False]
    assert results[0]["subject"]["attributes"] == {"level": 1}
    assert results[1]["subject"]["external_id"] == "team/bob"
    assert b'"stranger"' not in response.content.replace(b'"external_id":"stranger"', b"")
    authzen = json.loads(
        pip_client.post("/api/v1/pip/resolve?format=authzen", {"subjects": subjects[:1]}, format="json").content
    )
    assert authzen["results"][0]["subject"]["type"] == "user"


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({}, "/subjects"),
        ({"subjects": []}, "/subjects"),
        ({"subjects": "x"}, "/subjects"),
        ({"subjects": [{"tenant": "acme"}]}, "/subjects/0"),
        ({"subjects": [{"tenant": 1, "external_id": "a"}]}, "/subjects/0/tenant"),
        ({"subjects": [{"tenant": "acme", "external_id": "a"}] * 101}, "/subjects"),
        ({"subjects": [], "extra": 1}, "/subjects"),
    ],
)
def test_bad_batches_are_400(pip_client, acme, body, pointer) -> None:  # type: ignore[no-untyped-def]
    response = pip_client.post("/api/v1/pip/resolve", body, format="json")
    assert response.status_code == 400 and pointer in [e["pointer"] for e in response.json()["errors"]]


@pytest.mark.parametrize(
    ("raw", "pointer", "rule"),
    [
        ('{"subjects": [{"tenant": "acme", "external_id": "a\\u0000b"}]}', "/subjects/0/external_id", "nul"),
        ('{"subjects": [{"tenant": "acme\\u0000", "external_id": "a"}]}', "/subjects/0/tenant", "nul"),
        ('{"subjects": [{"tenant": "acme", "external_id": "\\udc00"}]}', "/subjects/0/external_id", "unicode"),
        ('{"subjects": [{"tenant": "acme", "external_id": "a", "x": ' + "[" * 40 + "]" * 40 + "}]}", "/", "depth"),
        ('{"subjects": [{"tenant": "acme", "external_id": "a"}]', None, None),  # not JSON: DRF's parse error
    ],
)
def test_hostile_batch_bodies_are_the_full_stacks_400(pip_client, acme, raw, pointer, rule) -> None:  # type: ignore[no-untyped-def]
    """The lean door takes only a body of the batch's own shape; anything else reaches the full
    stack's JSON checks, which name the pointer and the rule."""
    response = pip_client.post("/api/v1/pip/resolve", data=raw.encode(), content_type="application/json")
    assert response.status_code == 400 and response["Content-Type"] == "application/problem+json", response.content
    if rule is not None:
        errors = response.json()["errors"]
        assert (errors[0]["pointer"], errors[0]["rule"]) == (pointer, rule), errors


def test_query_counts(pip_client, acme, settings) -> None:  # type: ignore[no-untyped-def]
    for i in range(100):
        UserFactory(tenant=acme, external_id=f"u{i}", attributes={"level": i, "department": "eng"})
    pip_client.get(url("acme", "u0"))  # the key's last-used write happens once a minute, not in the count
    with CaptureQueriesContext(connection) as single:
        assert pip_client.get(url("acme", "u1")).status_code == 200
    assert len(single) <= 2, [q["sql"] for q in single.captured_queries]
    subjects = [{"tenant": "acme", "external_id": f"u{i}"} for i in range(100)]
    with CaptureQueriesContext(connection) as batch:
        response = pip_client.post("/api/v1/pip/resolve", {"subjects": subjects}, format="json")
    assert len(json.loads(response.content)["results"]) == 100
    assert len(batch) <= 4, [q["sql"] for q in batch.captured_queries]


@pytest.fixture
def shared_cache(settings):  # type: ignore[no-untyped-def]
    """A cache every request shares (in production: Redis through REDIS_URL)."""
    from django.core.cache import cache

    from resolver.cache import _SLUG_MEMO

    settings.SHARED_CACHE = True
    cache.clear()
    _SLUG_MEMO.clear()
    yield
    cache.clear()
    _SLUG_MEMO.clear()


def test_cached_lookup_makes_no_query_and_is_never_stale(
    pip_client, acme, shared_cache, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    user = UserFactory(tenant=acme, external_id="alice", attributes={"level": 1})
    for ref in ("acme", str(acme.id)):
        pip_client.get(url(ref, "alice"))
        pip_client.get(url(ref, "alice"))
        with CaptureQueriesContext(connection) as cached:
            response = pip_client.get(url(ref, "alice"))
        assert response.status_code == 200 and len(cached) == 0, [q["sql"] for q in cached.captured_queries]
    changes = [
        lambda: user_services.user_update(user=user, attributes={"level": 2}, merge_attributes=True),
        lambda: tenant_services.tenant_update(tenant=acme, attributes={"region": "us"}),
        lambda: attribute_services.definition_update(
            definition=acme.attribute_definitions.get(key="level"), description="x"
        ),
        lambda: user_services.user_update(user=user, status="disabled"),
    ]
    for change in changes:
        before = pip_client.get(url("acme", "alice"))
        with django_capture_on_commit_callbacks(execute=True):
            change()
        after = pip_client.get(url("acme", "alice"))
        assert after["ETag"] != before["ETag"], "a cached entry outlived a committed change"
    assert json.loads(after.content)["status"] == "disabled"
    with django_capture_on_commit_callbacks(execute=True):
        user_services.user_update(user=user, external_id="alice2")
    assert pip_client.get(url("acme", "alice")).status_code == 404
    assert pip_client.get(url("acme", "alice2")).status_code == 200


def test_console_write_is_read_by_the_pip_at_once(
    pip_client, acme, shared_cache, admin_client_logged_in, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    user = UserFactory(tenant=acme, external_id="alice", attributes={"level": 1})
    assert json.loads(pip_client.get(url("acme", "alice")).content)["attributes"] == {"level": 1}
    form = {
        "tenant": acme.pk,
        "external_id": "alice",
        "email": "",
        "display_name": "",
        "status": "active",
        "attr__level": "7",
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client_logged_in.post(f"/admin/users/user/{user.pk}/change/", form)
    assert response.status_code == 302
    assert json.loads(pip_client.get(url("acme", "alice")).content)["attributes"] == {"level": 7}


def test_opa_bundle(pip_client, acme) -> None:  # type: ignore[no-untyped-def]
    UserFactory(tenant=acme, external_id="alice", attributes={"department": "eng"})
    UserFactory(tenant=acme, external_id="team/bob", status="disabled")
    response = pip_client.get("/api/v1/pip/tenants/acme/bundle.tar.gz")
    assert response.status_code == 200 and response["Content-Type"] == "application/gzip"
    archive = tarfile.open(fileobj=io.BytesIO(b"".join(response.streaming_content)), mode="r:gz")
    data = json.load(archive.extractfile("data.json"))
    manifest = json.load(archive.extractfile(".manifest"))
    users = data["iam"]["tenants"]["acme"]["users"]
    assert users["alice"]["attributes"] == {"department": "eng"} and users["team/bob"]["status"] == "disabled"
    assert data["iam"]["tenants"]["acme"]["attributes"] == {"region": "eu"}
    assert manifest["roots"] == ["iam/tenants/acme"] and response["ETag"] == f'"{manifest["revision"]}"'
    assert (
        pip_client.get("/api/v1/pip/tenants/acme/bundle.tar.gz", HTTP_IF_NONE_MATCH=response["ETag"]).status_code == 304
    )
    UserFactory(tenant=acme, external_id="carol")
    again = pip_client.get("/api/v1/pip/tenants/acme/bundle.tar.gz", HTTP_IF_NONE_MATCH=response["ETag"])
    assert again.status_code == 200 and again["ETag"] != response["ETag"]
    other = TenantFactory(slug="other")
    assert pip_client.get(f"/api/v1/pip/tenants/{other.slug}/bundle.tar.gz").status_code == 404


BUNDLE = "/api/v1/pip/tenants/acme/bundle.tar.gz"


def bundle_users(response) -> dict:  # type: ignore[no-untyped-def]
    archive = tarfile.open(fileobj=io.BytesIO(b"".join(response.streaming_content)), mode="r:gz")
    return json.load(archive.extractfile("data.json"))["iam"]["tenants"]["acme"]["users"]


def test_bundle_etag_changes_when_a_write_stamped_earlier_commits_later(pip_client, acme, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """updated_at is the writer's clock before commit: a web pod whose clock is behind (or a write that
    took long to commit) stamps an older time than a change that is already visible."""
    from django.utils import timezone

    alice = UserFactory(tenant=acme, external_id="alice", attributes={"level": 1})
    bob = UserFactory(tenant=acme, external_id="bob", attributes={"level": 1})
    for level in (2, 3):
        bob = user_services.user_update(user=bob, attributes={"level": level})
    first = pip_client.get(BUNDLE)
    real_now = timezone.now
    monkeypatch.setattr(timezone, "now", lambda: real_now() - timedelta(hours=1))  # the lagging writer
    user_services.user_update(user=alice, attributes={"level": 2})
    monkeypatch.setattr(timezone, "now", real_now)

    again = pip_client.get(BUNDLE, HTTP_IF_NONE_MATCH=first["ETag"])

    assert again.status_code == 200
    assert again["ETag"] != first["ETag"]
    assert bundle_users(again)["alice"]["attributes"] == {"level": 2}


CHANGES_OF_A_TENANT = {
    "user attributes": lambda acme, alice: user_services.user_update(user=alice, attributes={"level": 5}),
    "user deleted": lambda acme, alice: user_services.user_delete(user=alice),
    "tenant attributes": lambda acme, alice: tenant_services.tenant_update(tenant=acme, attributes={"region": "us"}),
    "schema": lambda acme, alice: attribute_services.definition_create(tenant=acme, key="badge", type="string"),
}


@pytest.mark.parametrize("change", CHANGES_OF_A_TENANT)
def test_bundle_etag_follows_every_kind_of_change_and_only_changes(pip_client, acme, change) -> None:  # type: ignore[no-untyped-def]
    alice = UserFactory(tenant=acme, external_id="alice", attributes={"level": 1})
    first = pip_client.get(BUNDLE)
    assert pip_client.get(BUNDLE, HTTP_IF_NONE_MATCH=first["ETag"]).status_code == 304
    same = {name: getattr(alice, name) for name in ("external_id", "email", "display_name", "status", "attributes")}
    assert user_services.users_upsert(tenant=acme, rows=[(1, same)]).unchanged == 1
    assert pip_client.get(BUNDLE, HTTP_IF_NONE_MATCH=first["ETag"]).status_code == 304  # unchanged row: no change

    CHANGES_OF_A_TENANT[change](acme, alice)

    again = pip_client.get(BUNDLE, HTTP_IF_NONE_MATCH=first["ETag"])
    assert again.status_code == 200 and again["ETag"] != first["ETag"]


def test_empty_tenant_bundle_is_valid_json(pip_client, acme) -> None:  # type: ignore[no-untyped-def]
    response = pip_client.get("/api/v1/pip/tenants/acme/bundle.tar.gz")
    archive = tarfile.open(fileobj=io.BytesIO(b"".join(response.streaming_content)), mode="r:gz")
    assert json.load(archive.extractfile("data.json"))["iam"]["tenants"]["acme"]["users"] == {}


def test_bulk_upsert_reports_counts_and_emits_one_event_per_changed_user(acme) -> None:  # type: ignore[no-untyped-def]
    from outbox.models import OutboxEvent

    before = OutboxEvent.objects.count()
    rows = [
        (1, {"external_id": "a", "attributes": {"level": 1}}),
        (2, {"external_id": "b", "email": "not-an-email"}),
        (3, {"external_id": "c", "attributes": {"level": "x"}}),
        (4, {"external_id": "a", "attributes": {"level": 2}}),
        (5, {"external_id": "d", "colour": "red"}),
    ]
    report = user_services.users_upsert(tenant=acme, rows=rows)
    assert (report.created, report.updated, report.unchanged, report.invalid) == (1, 0, 0, 4)
    assert {line: errors[0].rule for line, _, errors in report.errors} == {
        2: "email",
        3: "type",
        4: "duplicate",
        5: "unknown_field",
    }
    again = user_services.users_upsert(
        tenant=acme, rows=[(1, {"external_id": "a", "attributes": {"level": 1}}), (2, {"external_id": "e"})]
    )
    assert (again.created, again.updated, again.unchanged) == (1, 0, 1)
    changed = user_services.users_upsert(tenant=acme, rows=[(1, {"external_id": "a", "attributes": {"level": 5}})])
    assert changed.updated == 1
    types = list(OutboxEvent.objects.order_by("sequence").values_list("event_type", "aggregate_version"))[before:]
    assert types == [("UserCreated", 1), ("UserCreated", 1), ("UserAttributesChanged", 2)]


def test_generate_demo_data_command(settings) -> None:  # type: ignore[no-untyped-def]
    from django.core.management import call_command

    from users.models import User

    out = io.StringIO()
    call_command(
        "generate_demo_data", "--tenants", "2", "--users", "30", "--attributes", "10", "--batch", "7", stdout=out
    )
    assert "created 60" in out.getvalue()
    user = User.objects.filter(tenant__slug="load-1").first()
    assert len(user.attributes) == 10


def test_a_slug_reused_by_a_new_tenant_never_serves_the_old_tenants_entries(
    pip_client, acme, shared_cache, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    from access.keys import api_key_create

    UserFactory(tenant=acme, external_id="alice", attributes={"level": 1})
    assert pip_client.get(url("acme", "alice")).status_code == 200
    assert pip_client.get(url("acme", "alice")).status_code == 200  # cached, slug memoised
    with django_capture_on_commit_callbacks(execute=True):
        tenant_services.tenant_delete(tenant=acme)
        tenant_services.tenant_purge(tenant=acme, force=True)
    assert pip_client.get(url("acme", "alice")).status_code == 404
    with django_capture_on_commit_callbacks(execute=True):
        reborn = TenantFactory(slug="acme")
        DefinitionFactory(tenant=reborn, key="level", type="integer")
        UserFactory(tenant=reborn, external_id="alice", attributes={"level": 2})
    _, raw = api_key_create(name="opa-2", scopes=["pip:read"], tenants=[reborn])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    for _ in range(3):
        body = json.loads(client.get(url("acme", "alice")).content)
        assert body["tenant"]["id"] == str(reborn.id) and body["attributes"] == {"level": 2}
    with django_capture_on_commit_callbacks(execute=True):
        user_services.user_update(user=reborn.users.get(), attributes={"level": 3})
    assert json.loads(client.get(url("acme", "alice")).content)["attributes"] == {"level": 3}


@pytest.mark.parametrize(
    ("body", "rule"),
    [
        ('{"subjects": [{"tenant": "acme", "external_id": "x", "deep": ' + "[" * 40 + "]" * 40 + "}]}", "depth"),
        ('{"subjects": [{"tenant": "acme", "external_id": "a\\u0000b"}]}', "nul"),
        ('{"subjects": [{"tenant": "acme", "external_id": "\\udc00"}]}', "unicode"),
    ],
)
def test_a_batch_with_input_the_decoder_refuses_is_400_with_its_rule_through_the_fast_path(
    pip_client, body: str, rule: str
) -> None:  # type: ignore[no-untyped-def]
    """The PIP's fast path hands what the one JSON decoder refuses to the full stack, which names the rule."""
    response = pip_client.generic("POST", "/api/v1/pip/resolve", body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert response.json()["errors"][0]["rule"] == rule, response.json()


def test_a_subject_deleted_and_created_again_does_not_revalidate_against_the_old_etag(pip_client, acme) -> None:  # type: ignore[no-untyped-def]
    """The new subject starts again at version 1: its ETag still differs, so a client holding the old
    body gets the new one (200), never a 304 that would keep the deleted subject's attributes."""
    old = user_services.user_create(tenant=acme, external_id="reborn", attributes={"level": 1})
    first = pip_client.get(url("acme", "reborn"))
    assert first.status_code == 200
    user_services.user_delete(user=old)
    user_services.user_create(tenant=acme, external_id="reborn", attributes={"level": 9})
    again = pip_client.get(url("acme", "reborn"), HTTP_IF_NONE_MATCH=first["ETag"])
    assert again.status_code == 200, again.status_code
    assert again.json()["attributes"] == {"level": 9} and again["ETag"] != first["ETag"]
