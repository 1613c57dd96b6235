"""SCIM Users (RFC 7644 §3.3-3.6): create, read, replace, patch, delete, through the user services."""

from __future__ import annotations

import pytest

from tests.factories import DefinitionFactory, TenantFactory
from tests.outbox_helpers import events
from tests.scim_helpers import ENTERPRISE, ERROR, TENANT_EXT, USER, Scim, user_body
from users.models import User

pytestmark = pytest.mark.django_db


@pytest.fixture
def acme():  # type: ignore[no-untyped-def]
    tenant = TenantFactory(slug="acme")
    DefinitionFactory(tenant=tenant, key="clearance", type="integer", min_value=0, max_value=5)
    DefinitionFactory(tenant=tenant, key="contractor", type="boolean")
    DefinitionFactory(tenant=tenant, key="projects", type="string_list")
    return tenant


@pytest.fixture
def scim(acme):  # type: ignore[no-untyped-def]
    return Scim(acme)


BJENSEN = {
    "schemas": [USER, ENTERPRISE],
    "userName": "bjensen@example.com",
    "externalId": "bjensen",
    "name": {"formatted": "Ms. Barbara J Jensen III", "familyName": "Jensen", "givenName": "Barbara"},
    "displayName": "Babs Jensen",
    "title": "Tour Guide",
    "emails": [
        {"value": "bjensen@example.com", "type": "work", "primary": True},
        {"value": "babs@jensen.org", "type": "home"},
    ],
    ENTERPRISE: {"employeeNumber": "701984", "department": "Tour Operations", "manager": {"value": "26118915"}},
}


def test_create_then_get_round_trips_the_rfc_example(scim, acme) -> None:  # type: ignore[no-untyped-def]
    created = scim.post("/Users", {**BJENSEN, TENANT_EXT: {"clearance": 3}})
    assert created.status_code == 201, created.body
    assert created["Content-Type"].startswith("application/scim+json")
    body = created.body
    assert created["Location"].endswith(f"/scim/v2/tenants/acme/Users/{body['id']}")
    assert created["ETag"] == 'W/"1"' == body["meta"]["version"]
    assert body["userName"] == "bjensen@example.com" and body["active"] is True
    assert body[ENTERPRISE]["manager"] == {"value": "26118915"}
    assert body[TENANT_EXT] == {"clearance": 3}
    assert set(body["schemas"]) == {USER, ENTERPRISE, TENANT_EXT}
    user = User.objects.get(pk=body["id"])
    assert (user.external_id, user.email, user.display_name, user.attributes) == (
        "bjensen@example.com", "bjensen@example.com", "Babs Jensen", {"clearance": 3},
    )  # fmt: skip
    assert user.profile["name"]["familyName"] == "Jensen" and user.profile["externalId"] == "bjensen"
    fetched = scim.get(f"/Users/{body['id']}")
    assert fetched.status_code == 200 and fetched.body == body
    assert events(aggregate_type="user") == [("UserCreated", 1)]


def test_tenant_attributes_are_validated_like_every_door(scim) -> None:  # type: ignore[no-untyped-def]
    response = scim.post("/Users", user_body("x", **{TENANT_EXT: {"clearance": 9}}))
    assert response.status_code == 400 and response.body["scimType"] == "invalidValue"
    assert response.body["schemas"] == [ERROR] and response.body["status"] == "400"
    assert "clearance" in response.body["detail"]
    for bad in ({"nope": 1}, {"clearance": "3"}, {"projects": "a"}, [], "clearance", 0):
        assert scim.post("/Users", user_body("x", **{TENANT_EXT: bad})).status_code == 400, bad
    for schemas in ("urn:ietf:params:scim:schemas:core:2.0:User", [1], {"a": 1}):
        wrong = scim.post("/Users", {**user_body("x"), "schemas": schemas})
        assert (wrong.status_code, wrong.body["scimType"]) == (400, "invalidValue"), schemas
    entra = scim.post("/Users", user_body("x", **{TENANT_EXT: {"contractor": "False", "projects": ["a"]}}))
    assert entra.status_code == 201 and entra.body[TENANT_EXT] == {"contractor": False, "projects": ["a"]}


def _create(scim, name="alice", **extra):  # type: ignore[no-untyped-def]
    created = scim.post("/Users", user_body(name, **extra))
    assert created.status_code == 201, created.body
    return created.body


def test_put_replaces_and_etags_guard_it(scim) -> None:  # type: ignore[no-untyped-def]
    user = _create(scim, title="Boss", **{TENANT_EXT: {"clearance": 1}})
    url = f"/Users/{user['id']}"
    assert scim.get(url, HTTP_IF_NONE_MATCH='W/"1"').status_code == 304
    assert scim.get(url, HTTP_IF_NONE_MATCH='W/"9"').status_code == 200
    stale = scim.put(url, user_body("alice", displayName="A"), HTTP_IF_MATCH='W/"9"')
    assert stale.status_code == 412 and stale.body["status"] == "412"
    put = scim.put(url, user_body("alice", displayName="A", **{TENANT_EXT: {"clearance": 2}}), HTTP_IF_MATCH='W/"1"')
    assert put.status_code == 200 and put["ETag"] == 'W/"2"'
    assert "title" not in put.body and put.body["displayName"] == "A" and put.body[TENANT_EXT] == {"clearance": 2}
    kept = scim.put(url, user_body("alice", id="ignored", meta={"x": 1}))  # read-only members: ignored
    assert kept.status_code == 200 and kept.body[TENANT_EXT] == {"clearance": 2}  # an extension left out: kept
    cleared = scim.put(url, user_body("alice", **{TENANT_EXT: {}}))
    assert TENANT_EXT not in cleared.body and cleared.body["meta"]["version"] == 'W/"4"'
    assert scim.put(url, {"displayName": "no userName"}).body["scimType"] == "invalidValue"
    assert scim.put(url, user_body("alice", password="hunter2")).status_code == 400
    assert scim.put(url, user_body("alice", unknownThing=1)).status_code == 400


def test_patch_operations(scim) -> None:  # type: ignore[no-untyped-def]
    user = _create(scim, emails=[{"value": "a@work.example", "type": "work", "primary": True}])
    url = f"/Users/{user['id']}"
    patched = scim.patch(
        url,
        [
            {"op": "Replace", "path": "active", "value": "False"},
            {"op": "Add", "path": "name.givenName", "value": "Alice"},
            {"op": "add", "path": 'emails[type eq "home"].value', "value": "a@home.example"},
            {"op": "replace", "path": 'emails[type eq "work"].value', "value": "alice@work.example"},
            {"op": "replace", "value": {"displayName": "Alice L", f"{TENANT_EXT}:clearance": 4}},
            {"op": "add", "path": f"{ENTERPRISE}:department", "value": "Eng"},
            {"op": "ADD", "path": f"{ENTERPRISE}:manager", "value": "boss-id"},
        ],
        HTTP_IF_MATCH='W/"1"',
    )
    assert patched.status_code == 200, patched.body
    body = patched.body
    assert body["active"] is False and body["name"] == {"givenName": "Alice"} and body["displayName"] == "Alice L"
    assert body["emails"] == [
        {"value": "alice@work.example", "type": "work", "primary": True},
        {"type": "home", "value": "a@home.example"},
    ]
    assert body[TENANT_EXT] == {"clearance": 4} and body[ENTERPRISE] == {
        "department": "Eng",
        "manager": {"value": "boss-id"},
    }
    assert body["meta"]["version"] == 'W/"2"'  # seven operations, one change
    user_row = User.objects.get(pk=user["id"])
    assert user_row.status == "disabled" and user_row.email == "alice@work.example"
    removed = scim.patch(
        url,
        [
            {"op": "remove", "path": 'emails[type eq "home"]'},
            {"op": "remove", "path": f"{TENANT_EXT}:clearance"},
            {"op": "remove", "path": "name.givenName"},
            {"op": "remove", "path": f"{ENTERPRISE}"},
            {"op": "replace", "path": "active", "value": True},
        ],
    ).body
    assert [e["type"] for e in removed["emails"]] == ["work"] and TENANT_EXT not in removed
    assert ENTERPRISE not in removed and removed["active"] is True and removed.get("name", {}) == {}
    assert [t for t, _ in events(aggregate_type="user")] == ["UserCreated", "UserUpdated", "UserUpdated"]


@pytest.mark.parametrize(
    ("operations", "scim_type"),
    [
        ([{"op": "move", "path": "active", "value": True}], "invalidSyntax"),
        ([{"op": "remove"}], "noTarget"),
        ([{"op": "replace", "path": "groups", "value": []}], "mutability"),
        ([{"op": "replace", "path": "id", "value": "x"}], "mutability"),
        ([{"op": "replace", "path": "emails[type eq", "value": "x"}], "invalidPath"),
        ([{"op": "replace", "path": "urn:nope:User:x", "value": "x"}], "invalidPath"),
        ([{"op": "replace", "path": 'emails[type ne "work"].value', "value": "x"}], "noTarget"),
        ([{"op": "replace", "path": f"{TENANT_EXT}:clearance", "value": "high"}], "invalidValue"),
        ([{"op": "replace", "path": "active", "value": "maybe"}], "invalidValue"),
        ([{"op": "add", "path": "title"}], "invalidValue"),
        ([], "invalidSyntax"),
    ],
)
def test_bad_patches_are_400(scim, operations, scim_type) -> None:  # type: ignore[no-untyped-def]
    user = _create(scim)
    response = scim.patch(f"/Users/{user['id']}", operations)
    assert response.status_code == 400, response.body
    assert response.body["scimType"] == scim_type, response.body
    assert events(aggregate_type="user") == [("UserCreated", 1)]


def test_unique_user_name_is_409(scim) -> None:  # type: ignore[no-untyped-def]
    _create(scim)
    for name in ("alice", "ALICE"):
        response = scim.post("/Users", user_body(name))
        assert response.status_code == 409 and response.body["scimType"] == "uniqueness", name


def test_not_found(scim, acme) -> None:  # type: ignore[no-untyped-def]
    other = Scim(TenantFactory(slug="other"), name="other-idp")
    theirs = _create(other, "theirs")
    for path in (f"/Users/{theirs['id']}", "/Users/not-a-uuid", "/Users/00000000-0000-0000-0000-000000000000"):
        assert scim.get(path).status_code == 404
        assert scim.delete(path).status_code == 404
        assert scim.patch(path, [{"op": "replace", "path": "active", "value": False}]).body["status"] == "404"


def test_delete_suspends_by_default_and_a_new_post_brings_the_user_back(scim) -> None:  # type: ignore[no-untyped-def]
    user = _create(scim, **{TENANT_EXT: {"clearance": 1}})
    assert scim.delete(f"/Users/{user['id']}", HTTP_IF_MATCH='W/"1"').status_code == 204
    row = User.objects.get(pk=user["id"])
    assert row.status == "disabled" and "deprovisioned" in row.profile
    assert scim.get(f"/Users/{user['id']}").status_code == 404
    assert scim.get("/Users", {"filter": 'userName eq "alice"'}).body["totalResults"] == 0
    again = scim.post("/Users", user_body("alice", displayName="Back"))
    assert again.status_code == 201 and again.body["id"] == user["id"] and again.body["active"] is True
    assert "deprovisioned" not in User.objects.get(pk=user["id"]).profile
    assert [t for t, _ in events(aggregate_type="user")] == ["UserCreated", "UserUpdated", "UserUpdated"]


def test_delete_removes_under_the_delete_rule(scim, settings) -> None:  # type: ignore[no-untyped-def]
    settings.SCIM_DEPROVISION_TENANTS = {"acme": "delete"}
    user = _create(scim)
    assert scim.delete(f"/Users/{user['id']}", HTTP_IF_MATCH='W/"7"').status_code == 412
    assert scim.delete(f"/Users/{user['id']}").status_code == 204
    assert not User.objects.filter(pk=user["id"]).exists()
    assert scim.delete(f"/Users/{user['id']}").status_code == 404
    assert [t for t, _ in events(aggregate_type="user")] == ["UserCreated", "UserDeleted"]


def test_a_body_over_the_limit_is_413(scim, settings) -> None:  # type: ignore[no-untyped-def]
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2000
    response = scim.post("/Users", user_body("big", title="x" * 5000))
    assert response.status_code == 413 and response.body["status"] == "413"
